"""What the dispatcher needs from an inference backend (ONNX Runtime, TensorRT).

The dispatcher owns routing (gate argmax, grouping, scattering) and input checks; a backend
only runs engines.  Features between the gate and the routes are an opaque handle the backend
chooses (a host array, an ORT value on the device, a CUDA buffer), so they can stay where the
gate left them.

A backend is constructed as ``Class(bundle, options)``: ``options`` is an instance of the class's
``options_class`` (a frozen dataclass; None means its defaults), checked by ``resolve_options``.
"""

from __future__ import annotations

import abc
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ...errors import DsnetError
from ..bundle import Bundle
from ..manifest import RouteInfo


class OptionsTypeError(DsnetError, TypeError):
    """Options of one backend handed to another (or not an options object at all)."""


@dataclass(frozen=True)
class NoOptions:
    """The options of a backend that takes none."""


class Backend(abc.ABC):
    name: str
    #: The frozen dataclass of this backend's options (``Dispatcher.load(..., options=...)``).
    options_class: ClassVar[type] = NoOptions
    #: The bundle whose engines this backend runs.
    bundle: Bundle
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


def resolve_options(backend: type[Backend], options: Any) -> Any:
    """``options`` checked against ``backend.options_class`` (None: the class's defaults)."""
    expected = backend.options_class
    if options is None:
        return expected()
    if not isinstance(options, expected):
        raise OptionsTypeError(f"the {backend.name!r} backend ({backend.__name__}) takes {expected.__name__} "
                               f"options (or None for its defaults), got {type(options).__name__}: {options!r}")
    return options
