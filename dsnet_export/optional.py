"""Optional dependencies, imported when first needed, with the install line that provides them.

The runtime installs numpy, onnxruntime, onnx, safetensors and Pillow only; everything else is an
extra.  ``require`` turns a missing one into a one-line user error naming the extra; ``optional``
returns None so the caller can do without (e.g. plain progress lines instead of a tqdm bar).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import DsnetError

#: module -> (PyPI package, the dsnet-export extra that brings it, or None for a direct install)
PACKAGES = {
    "torch": ("torch", "export"),
    "tqdm": ("tqdm", "bench"),
    "matplotlib": ("matplotlib", "bench"),
    "sklearn": ("scikit-learn", "train"),
    "cv2": ("opencv-python-headless", "video"),
    "tensorrt": ("tensorrt", "trt"),
    "openvino": ("openvino", "openvino"),
    "ai_edge_litert": ("ai-edge-litert", "litert"),
    "litert_torch": ("litert-torch", "litert-export"),
}


def install_hint(module: str) -> str:
    package, extra = PACKAGES.get(module.split(".")[0], (module.split(".")[0], None))
    return f"pip install 'dsnet-export[{extra}]'" if extra else f"pip install {package}"


def require(module: str, purpose: str) -> ModuleType:
    """``module`` imported, or a DsnetError: '<purpose> needs <package> (<why>): <install line>'."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = PACKAGES.get(module.split(".")[0], (module,))[0]
        raise DsnetError(f"{purpose} needs {package} ({exc}): {install_hint(module)}") from None


def optional(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
