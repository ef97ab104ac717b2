"""ONNX Runtime backend (CPU by default; CUDA / TensorRT execution providers when installed)."""

from .backend import OrtBackend

__all__ = ["OrtBackend"]
