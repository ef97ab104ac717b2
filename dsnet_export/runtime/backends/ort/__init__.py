"""ONNX Runtime backend (CPU by default; CUDA / TensorRT execution providers when installed)."""

from .backend import OrtBackend
from .options import OrtOptions

__all__ = ["OrtBackend", "OrtOptions"]
