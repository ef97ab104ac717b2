"""Bench settings and goals (light: the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import DsnetError

SCHEMA = "dsnet-export/bench"
SCHEMA_VERSION = 1
OVERHEAD_GOAL = 1.05   # dispatcher / monolithic, per route and batch size
SPEEDUP_GOAL = 5.0     # PyTorch masking / dispatcher on a mixed batch


@dataclass
class BenchSettings:
    rounds: int = 30
    warmup: int = 2
    batch_sizes: tuple[int, ...] = (1, 8)
    threads: int | None = None
    shared_pool: bool = False   # one process-wide ONNX Runtime thread pool for every session
    torch: bool = True
    memory: bool = True
    memory_runs: int = 5       # after one warm-up process of each kind
    idle_wait: float = 0.2      # cap, seconds, on waiting for the process to go idle before each call
    data: list[str] = field(default_factory=list)
    seed: int = 0
    progress: bool = True

    def check(self) -> None:
        if self.rounds < 1:
            raise DsnetError("--rounds must be at least 1")
        if self.warmup < 0:
            raise DsnetError("--warmup must be at least 0")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise DsnetError("--batch-sizes needs positive integers, e.g. 1,8")
        if self.threads is not None and self.threads < 1:
            raise DsnetError("--threads must be at least 1")
        if self.memory_runs < 1:
            raise DsnetError("--memory-runs must be at least 1")
