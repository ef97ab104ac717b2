"""Inference backends behind the one ``Dispatcher`` API, registered by name and imported only when chosen.

A backend is named by ``"module:Class"`` so that choosing ONNX Runtime never imports TensorRT code (and the
runtime layer holds no import of the layers above it).  Each backend class names its options class
(``options_class``, a frozen dataclass: ``OrtOptions``, ``TrtOptions``), and is built from a bundle and
such options by ``make_backend``.  ``register_backend`` adds one from outside.
"""

from __future__ import annotations

import importlib
from typing import Any

from ...errors import DsnetError
from ..bundle import Bundle
from .base import Backend, NoOptions, OptionsTypeError, resolve_options

_REGISTRY: dict[str, str] = {
    "ort": "dsnet_export.runtime.backends.ort:OrtBackend",
    "trt": "dsnet_export.runtime.backends.trt:TrtBackend",
    "openvino": "dsnet_export.runtime.backends.openvino:OpenVinoBackend",
    "litert": "dsnet_export.runtime.backends.litert:LiteRtBackend",
}

def register_backend(name: str, target: str) -> None:
    """Make ``Dispatcher.load(..., backend=name)`` use the class named by ``target`` ("module:Class")."""
    if ":" not in target:
        raise ValueError(f"backend target must be 'module:Class', got {target!r}")
    _REGISTRY[name] = target

def backend_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)

def backend_class(name: str) -> type[Backend]:
    """The registered class, imported now (a missing optional dependency surfaces here, as the
    backend's own clear error)."""
    if name not in _REGISTRY:
        raise DsnetError(f"unknown backend {name!r} (one of {', '.join(_REGISTRY)})")
    module, attribute = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), attribute)

def options_class(name: str) -> type:
    """The options class of the backend registered as ``name`` (importing only that backend)."""
    return backend_class(name).options_class

def make_backend(name: str, bundle: Bundle, options: Any = None) -> Backend:
    """The backend registered as ``name`` for ``bundle``, with ``options`` (an instance of its
    ``options_class``; None: the defaults).  Options of another backend raise ``OptionsTypeError``."""
    cls = backend_class(name)
    return cls(bundle, resolve_options(cls, options))


__all__ = ["Backend", "NoOptions", "OptionsTypeError", "backend_class", "backend_names", "make_backend",
           "options_class", "register_backend"]
