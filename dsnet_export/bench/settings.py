"""Bench settings and goals (light: the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import DsnetError

SCHEMA = "dsnet-export/bench"
SCHEMA_VERSION = 2  # 2: blocks of calls per round, paired ratios, engines/fused, end to end
OVERHEAD_GOAL = 1.05   # dispatcher / monolithic, per route and batch size
SMALL_MODEL_MS = 1.0   # below this monolithic latency a fixed per-call cost is a larger share, so:
SMALL_MODEL_OVERHEAD_GOAL = 1.15
PER_CALL_GOAL_US = 30.0  # dispatcher - its own bare engine runs, per call
SPEEDUP_GOAL = 5.0     # PyTorch masking / dispatcher on a mixed batch


@dataclass
class BenchSettings:
    rounds: int = 15
    warmup: int = 2             # untimed calls at the start of every block
    block_seconds: float = 0.02  # a block's timed calls last about this long (3 to 50 calls)
    batch_sizes: tuple[int, ...] = (1, 8)
    threads: int | None = None
    shared_pool: bool = False   # one process-wide ONNX Runtime thread pool for every session
    torch: bool = True
    memory: bool = True
    memory_runs: int = 5       # after one warm-up process of each kind
    idle_wait: float = 0.2      # cap, seconds, on waiting for the process to go idle before each block
    data: list[str] = field(default_factory=list)
    end_to_end: bool = True
    labelled: str = "digits"    # the end-to-end section's labelled data: digits or a folder of class folders
    e2e_samples: int | None = None  # all of them
    e2e_rounds: int = 3
    seed: int = 0
    progress: bool = True

    def check(self) -> None:
        if self.rounds < 1:
            raise DsnetError("rounds= must be at least 1")
        if self.warmup < 0:
            raise DsnetError("warmup= must be at least 0")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise DsnetError("batch_sizes= needs positive integers, e.g. 1,8")
        if self.threads is not None and self.threads < 1:
            raise DsnetError("threads= must be at least 1")
        if self.memory_runs < 1:
            raise DsnetError("memory_runs= must be at least 1")
        if self.block_seconds <= 0:
            raise DsnetError("block_seconds= must be positive")
        if self.e2e_rounds < 1:
            raise DsnetError("e2e_rounds= must be at least 1")
        if self.e2e_samples is not None and self.e2e_samples < 1:
            raise DsnetError("e2e_samples= must be at least 1")
