"""dsnet-export: deploy Dynamic Slimmable Networks as a gate engine plus one dense engine per width.

Importing this package does not import torch: the torch-backed names (``load_supernet``,
``Supernet``) load on first use, so the runtime can run on devices without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import BundleError, CheckpointError, DsnetError, InputError, RouteError, SpecError

__version__ = "0.1.0"

_LAZY = {
    "load_supernet": "dsnet_export.model",
    "save_supernet": "dsnet_export.model",
    "Supernet": "dsnet_export.model",
}

__all__ = ["BundleError", "CheckpointError", "DsnetError", "InputError", "RouteError", "SpecError", "Supernet",
           "__version__", "load_supernet", "save_supernet"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dsnet_export' has no attribute {name!r}")
