"""Inference backends behind the one ``Dispatcher`` API, registered by name and imported only when chosen.

A backend is named by ``"module:Class"`` so that choosing ONNX Runtime never imports TensorRT (and the
runtime layer holds no import of the layers above it).  ``register_backend`` adds one from outside.
"""

from __future__ import annotations

import importlib

from ...errors import DsnetError
from .base import Backend

_REGISTRY: dict[str, str] = {
    "ort": "dsnet_export.runtime.backends.ort:OrtBackend",
    "trt": "dsnet_export.trt.backend:TrtBackend",
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


__all__ = ["Backend", "backend_class", "backend_names", "register_backend"]
