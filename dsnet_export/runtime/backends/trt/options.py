"""The TensorRT backend's options (``Dispatcher.load(dir, "trt", TrtOptions())``).

Everything the backend needs comes from the plans recorded in the bundle for this device (precision,
batch range, stripped or not), so there is nothing to choose yet; the class exists so that options
meant for another backend (e.g. ONNX Runtime's providers) are refused by type, not ignored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrtOptions:
    """Options of the TensorRT backend (none so far)."""
