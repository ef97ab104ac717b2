"""Reading the shared weights file without copying it: a memory map per tensor.

Every ONNX Runtime session of a bundle is fed these arrays as in-memory external data, so the
file is mapped once (pages shared with every other process that maps it) and no session
reads it on its own.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BundleError


@dataclass(frozen=True)
class StoredTensor:
    """Where a stored tensor's bytes are in the shared weights file."""

    shape: tuple[int, ...]
    offset: int
    length: int


def read_layout(path: Path) -> dict[str, StoredTensor]:
    """Absolute byte offset, length and shape of every tensor in a float32 safetensors file."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > 100_000_000:
                raise ValueError("implausible header length")
            header = json.loads(f.read(header_len))
        size = path.stat().st_size
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not a readable safetensors file ({exc})") from None
    base = 8 + header_len
    layout = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if info.get("dtype") != "F32":
            raise BundleError(f"{path}: {key} is {info.get('dtype')}; bundles store float32 only")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end - begin != 4 * int(np.prod(shape, dtype=np.int64)) or base + end > size:
            raise BundleError(f"{path}: {key} has inconsistent offsets {begin}..{end} for shape {list(shape)}")
        layout[key] = StoredTensor(shape, base + begin, end - begin)
    return layout


def map_weights(path: Path) -> dict[str, np.ndarray]:
    """Read-only float32 arrays backed by a memory map of ``path`` (no copy)."""
    layout = read_layout(path)
    whole = np.memmap(path, dtype=np.uint8, mode="r")
    return {key: whole[t.offset:t.offset + t.length].view(np.float32).reshape(t.shape) for key, t in layout.items()}
