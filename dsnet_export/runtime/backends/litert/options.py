"""The LiteRT backend's options (``Dispatcher.load(dir, "litert", LiteRtOptions(...))``)."""

from __future__ import annotations

from dataclasses import dataclass

from ....errors import DsnetError


@dataclass(frozen=True)
class LiteRtOptions:
    """``threads``: XNNPACK threads per interpreter (1 by default: on 2 cores a second thread paid off only at
    batch 8, and each call-site thread has its own interpreter)."""

    threads: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise DsnetError(f"LiteRT threads must be a positive integer, got {self.threads!r}")
