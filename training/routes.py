"""Which widths Stage I trains: the widest, a few random uniform widths, and the smallest (sandwich rule)."""

from __future__ import annotations

import random

from dsnet_export.arch import ArchSpec

WIDEST = "largest"
SMALLEST = "smallest"


def random_routes(spec: ArchSpec, count: int, rng: random.Random) -> list[str]:
    """``count`` distinct uniform widths strictly between the smallest and the widest."""
    middle = list(range(1, spec.num_uniform_choices))
    return [f"uniform:{k}" for k in rng.sample(middle, min(count, len(middle)))]


def evaluated_routes(spec: ArchSpec) -> list[str | int]:
    """The gate's routes (by index) and the widest fixed width."""
    return [*range(spec.num_routes), WIDEST]
