"""The shared weights file: one safetensors file whose tensor bytes ONNX reads as external data.

A safetensors file is an 8-byte little-endian header length, a JSON header with each
tensor's dtype, shape and ``data_offsets`` (relative to the end of the header), then the raw
little-endian bytes — exactly what ONNX external data (location, offset, length) can point at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from ..graphs.graph import Shape
from ..runtime.weights import StoredTensor, read_layout

FORMAT = "dsnet-export/weights"


def write_weights(path: Path, sources: dict[str, np.ndarray], needed: dict[str, Shape]) -> dict[str, StoredTensor]:
    """Store each needed tensor cut to its prefix ``needed[key]``; return where each one lies."""
    tensors = {key: np.ascontiguousarray(sources[key][tuple(slice(0, s) for s in shape)], dtype=np.float32)
               for key, shape in sorted(needed.items())}
    save_file(tensors, str(path), metadata={"format": FORMAT})
    return read_layout(path)
