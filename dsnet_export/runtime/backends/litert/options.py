"""The LiteRT backend's options (``Dispatcher.load(dir, "litert", LiteRtOptions(...))``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ....errors import DsnetError


@dataclass(frozen=True)
class LiteRtOptions:
    """``threads``: XNNPACK threads per interpreter (None: one per core, as ONNX Runtime's default; measured on 2
    cores at 224 px, 2 threads made LiteRT 0.83-0.88x of ONNX Runtime at batch 1 where 1 thread was 1.37-1.46x)."""

    threads: int | None = None

    def __post_init__(self) -> None:
        if self.threads is None:
            object.__setattr__(self, "threads", os.cpu_count() or 1)
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise DsnetError(f"LiteRT threads must be a positive integer, got {self.threads!r}")
