"""Export: supernet -> gate + per-route ONNX engines sharing one weights file.

``build_bundle`` needs torch; the emitters (``emit``, ``graph``, ``weights``) do not, and importing
this package does not import torch until ``build_bundle`` is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {"BuildReport": "build", "SizeReport": "build", "build_bundle": "build", "select_routes": "build"}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
