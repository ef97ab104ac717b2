"""OpenVINO behind the dispatcher (Intel CPUs, GPUs and NPUs), from the bundle's ONNX engines as they are."""

from .backend import OpenVinoBackend
from .options import OpenVinoOptions

__all__ = ["OpenVinoBackend", "OpenVinoOptions"]
