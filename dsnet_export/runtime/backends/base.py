"""What the dispatcher needs from an inference backend (ONNX Runtime, TensorRT).

The dispatcher owns routing (gate argmax, grouping, scattering) and input checks; a backend
only runs engines.  Features between the gate and the routes are an opaque handle the backend
chooses (a host array, an ORT value on the device, a CUDA buffer), so they can stay where the
gate left them.
"""

from __future__ import annotations

import abc
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from ..manifest import RouteInfo


class Backend(abc.ABC):
    name: str
    #: Largest batch one engine call takes (None: any); the dispatcher splits bigger batches.
    max_batch: int | None = None

    def exclusive(self) -> AbstractContextManager:
        """Held by the dispatcher for a whole call (gate and routes).  Backends whose features live
        in one shared buffer serialise calls with it; thread-safe ones return a no-op."""
        return nullcontext()

    @abc.abstractmethod
    def run_gate(self, x: np.ndarray) -> tuple[Any, np.ndarray]:
        """Gate engine on a checked batch: (features handle, gate logits [N, gate routes] on the host)."""

    @abc.abstractmethod
    def run_route(self, route: RouteInfo, features: Any, rows: np.ndarray | None, out: np.ndarray) -> None:
        """Route engine on ``features`` (all of them, or only ``rows``); logits written into ``out``."""

    @abc.abstractmethod
    def run_fixed(self, route: RouteInfo, x: np.ndarray, out: np.ndarray) -> None:
        """A fixed route (a whole network taking the image) on a checked batch."""

    @abc.abstractmethod
    def load(self, file: str) -> None:
        """Prepare one engine now instead of on first use."""

    @property
    @abc.abstractmethod
    def shared_weights(self) -> bool:
        """True when every engine took its weights from the bundle's one shared copy."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release engines and buffers; later calls raise."""
