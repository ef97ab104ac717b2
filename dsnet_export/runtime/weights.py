"""Reading the shared weights file without copying it: a memory map per tensor.

Every ONNX Runtime session of a bundle is fed these arrays as in-memory external data, so the
file is mapped once (pages shared with every other process that maps it) and no session
reads it on its own.

The header is untrusted: every entry must be a float32 tensor with a well-formed shape and offsets that
lie inside the file and do not overlap; anything else is a ``BundleError`` naming the file.  A mapped file
that shrinks afterwards (truncated in place, e.g. by ``cp`` or ``rsync --inplace`` onto a live bundle)
would kill the process with SIGBUS on the next read of a page past its new end, so ``MappedWeights``
keeps the mapped file open and ``check_size`` compares its current size (of that very file, by its
descriptor) with the size it had when mapped before anything reads it again.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BundleError
from ..records import strict_json_loads

_MAX_HEADER = 100_000_000
_MAX_INT = 1 << 62


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
            return _layout_of(f, path)
    except OSError as exc:
        raise BundleError(f"{path}: not a readable safetensors file ({exc})") from None


def _layout_of(f, path: Path) -> dict[str, StoredTensor]:
    """``read_layout`` of the open file ``f``."""
    try:
        f.seek(0)
        size = os.fstat(f.fileno()).st_size
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > min(_MAX_HEADER, size - 8):
            raise ValueError(f"implausible header length {header_len}")
        header = strict_json_loads(f.read(header_len))
    except (OSError, struct.error, ValueError) as exc:
        raise BundleError(f"{path}: not a readable safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise BundleError(f"{path}: not a readable safetensors file (the header is not a JSON object)")
    base = 8 + header_len
    layout = {}
    for key, info in header.items():
        if key == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise BundleError(f"{path}: __metadata__ must map names to strings")
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise BundleError(f"{path}: {key!r:.80}: expected an object with dtype, shape and data_offsets")
        if info["dtype"] != "F32":
            raise BundleError(f"{path}: {key!r:.80} is {info['dtype']!r:.40}; bundles store float32 only")
        shape, offsets = info["shape"], info["data_offsets"]
        if not (isinstance(shape, list) and len(shape) <= 32 and all(_small_int(d) for d in shape)):
            raise BundleError(f"{path}: {key!r:.80}: shape must be a list of non-negative integers, got {shape!r:.60}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_small_int(o) for o in offsets)):
            raise BundleError(f"{path}: {key!r:.80}: data_offsets must be two non-negative integers, "
                              f"got {offsets!r:.60}")
        begin, end = offsets
        if begin > end or end - begin != 4 * math.prod(shape) or base + end > size:
            raise BundleError(f"{path}: {key!r:.80} has inconsistent offsets {begin}..{end} for shape {shape} "
                              f"(file of {size} bytes)")
        layout[key] = StoredTensor(tuple(shape), base + begin, end - begin)
    spans = sorted((t.offset, t.offset + t.length) for t in layout.values() if t.length)
    for (_, end), (begin, _) in zip(spans, spans[1:]):
        if begin < end:
            raise BundleError(f"{path}: two tensors' data overlap (at byte {begin})")
    return layout


def _small_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_INT


def data_end(layout: dict[str, StoredTensor]) -> int:
    """The byte just past the last tensor's data: the least size the file may have."""
    return max((t.offset + t.length for t in layout.values()), default=0)


class MappedWeights(dict):
    """``map_weights``'s result: name -> read-only float32 array over one memory map of the file.

    The file stays open, so ``check_size`` can tell whether the mapped file (not whatever now has its
    name) shrank, which would make reading a mapped page past its new end a SIGBUS."""

    def __init__(self, path: Path, expected_size: int | None = None):
        super().__init__()
        self.path = Path(path)
        self._file = self.path.open("rb")
        try:
            layout = self.layout = _layout_of(self._file, self.path)
            self.size = os.fstat(self._file.fileno()).st_size
            if expected_size is not None and self.size != expected_size:
                raise BundleError(f"{self.path}: size {self.size} does not match the manifest's {expected_size}; "
                                  f"the file was changed (replace a bundle's files by renaming new ones over them)")
            if self.size < data_end(layout):
                raise BundleError(f"{self.path}: {self.size} bytes, shorter than its header says "
                                  f"({data_end(layout)}); the file was truncated")
            whole = np.memmap(self._file, dtype=np.uint8, mode="r") if self.size else np.zeros(0, np.uint8)
        except BaseException:
            self._file.close()
            raise
        for key, t in layout.items():
            self[key] = whole[t.offset:t.offset + t.length].view(np.float32).reshape(t.shape)

    def check_size(self) -> None:
        """BundleError unless the mapped file still has the size it had when mapped."""
        if self._file.closed:
            raise BundleError(f"{self.path}: the weights were released (the dispatcher is closed)")
        now = os.fstat(self._file.fileno()).st_size
        if now != self.size:
            raise BundleError(f"{self.path}: the weights file changed size since it was mapped ({self.size} -> "
                              f"{now} bytes): it was overwritten in place while in use; update a live bundle by "
                              f"writing a new bundle directory and swapping it in, or by renaming a new file over "
                              f"the old one (never copy onto it in place, as cp and rsync's in-place mode do)")

    def close(self) -> None:
        self.clear()
        self._file.close()


def map_weights(path: Path, expected_size: int | None = None) -> MappedWeights:
    """Read-only float32 arrays backed by a memory map of ``path`` (no copy); ``expected_size``: the size the
    manifest records (checked on the mapped file itself)."""
    try:
        return MappedWeights(Path(path), expected_size)
    except OSError as exc:
        raise BundleError(f"{path}: cannot map the weights file ({exc})") from None
