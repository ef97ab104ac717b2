"""Benchmarks of a bundle: dispatcher overhead, mixed batches vs masking, route efficiency, memory.

Importing this package imports nothing heavy (names load on first use), and never torch:
only the PyTorch masking baseline (``masking_torch``) imports torch, when it runs.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "BenchSettings": "settings",
    "run_bench": "runner",
    "check_report": "report",
    "format_report": "report",
    "write_json": "report",
    "write_png": "report",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
