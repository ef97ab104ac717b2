"""Optimization profiles: every engine accepts batches 1..max with its kernels tuned for ``opt``."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DsnetError


@dataclass(frozen=True)
class BatchProfile:
    opt: int
    max: int
    min: int = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.max, int) and 1 <= self.max <= 4096):
            raise DsnetError(f"max_batch= must be an integer in 1..4096, got {self.max!r}")
        if not (isinstance(self.opt, int) and self.min <= self.opt <= self.max):
            raise DsnetError(f"opt_batch= must be between 1 and max_batch= ({self.max}), got {self.opt!r}")

    @classmethod
    def make(cls, max_batch: int, opt_batch: int | None = None) -> BatchProfile:
        return cls(opt=opt_batch if opt_batch is not None else max_batch, max=max_batch)

    def shapes(self, sample_shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) shapes for an input whose per-sample shape is ``sample_shape``."""
        return ((self.min, *sample_shape), (self.opt, *sample_shape), (self.max, *sample_shape))
