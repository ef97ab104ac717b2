"""What the dispatcher needs from an inference backend (ONNX Runtime, TensorRT).

The dispatcher owns routing (gate argmax, grouping, scattering) and input checks; a backend
only runs engines.  Features between the gate and the routes are an opaque handle the backend
chooses (a host array, an ORT value on the device, a CUDA buffer), so they can stay where the
gate left them.
"""

from __future__ import annotations

import abc
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from ..manifest import RouteInfo


class Backend(abc.ABC):
    name: str
    #: Largest batch one engine call takes (None: any); the dispatcher splits bigger batches.
    max_batch: int | None = None
    #: True when ``run_gate`` reports whether its input was finite (checked inside the engine,
    #: cheaper than a numpy pass); otherwise the dispatcher checks the input itself.
    checks_finite: bool = False

    #: Held by the dispatcher for a whole call (gate and routes) when not None: backends whose
    #: features live in one shared buffer serialise calls with it.  Thread-safe backends: None.
    lock: AbstractContextManager | None = None

    @abc.abstractmethod
    def run_gate(self, x: np.ndarray) -> tuple[Any, np.ndarray, bool | None]:
        """Gate engine on a checked batch: (features handle, gate logits [N, gate routes] on the host
        (the caller's to keep), whether every input value was finite or None when not checked)."""

    @abc.abstractmethod
    def run_route(self, route: RouteInfo, features: Any, rows: np.ndarray | None) -> np.ndarray:
        """Route engine on ``features`` (all of them, or only ``rows``): logits, the caller's to keep."""

    @abc.abstractmethod
    def run_fixed(self, route: RouteInfo, x: np.ndarray) -> np.ndarray:
        """A fixed route (a whole network taking the image) on a checked batch: logits."""

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
