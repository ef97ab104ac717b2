"""LiteRT (TensorFlow Lite) behind the dispatcher: phones and small Linux boards."""

from .backend import LiteRtBackend
from .options import LiteRtOptions

__all__ = ["LiteRtBackend", "LiteRtOptions"]
