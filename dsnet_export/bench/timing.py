"""Timing as a user's loop calls the code: blocks of back-to-back calls, interleaved, medians.

A user's loop calls the same thing again and again, so a contender is timed in *blocks*: a
few untimed calls, then ``calls`` timed calls back to back, with nothing in between (no idle
waits: thread pools stay as warm or as cold as the loop leaves them).  Blocks are interleaved:
each round runs one block of every contender, in an order rotated by one place per round, so
slow drifts of a shared, noisy machine fall on every contender alike.

Contenders that are compared with each other form a *group*; a group's blocks run next to each
other, so each round gives a ratio of two medians measured seconds apart.  ``Timings.ratio`` is
the median of those per-round ratios, which a noisy neighbour moves far less than a ratio of
two overall medians.

Before each block (untimed) ``settle`` may wait until this process is idle: ONNX Runtime's
worker threads of the *previous* contender can still be spinning, and would steal cores from
this one, which it would not meet in a deployment where it runs alone.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

Clock = Callable[[], float]


def rotation(names: Sequence, round_index: int) -> list:
    """``names`` rotated left by ``round_index`` places: round r starts with item r mod n."""
    if not names:
        return []
    k = round_index % len(names)
    return list(names[k:]) + list(names[:k])


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no samples")
    return float(statistics.median(values))


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """(25th, 75th) percentile; both equal the value for a single sample."""
    if len(values) < 2:
        return float(values[0]), float(values[0])
    q = statistics.quantiles(values, n=4, method="inclusive")
    return float(q[0]), float(q[2])


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between samples."""
    if not values:
        raise ValueError("percentile of no samples")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


@dataclass
class Timings:
    """Seconds per timed call, per contender and round (one block per round)."""

    blocks: dict[str, list[list[float]]]
    orders: list[list[str]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)  # timed calls per block
    idle_wait_s: float = 0.0  # total time spent waiting for the process to go idle

    def samples(self, name: str) -> list[float]:
        return [t for block in self.blocks[name] for t in block]

    def block_medians(self, name: str) -> list[float]:
        return [median(block) for block in self.blocks[name]]

    def median(self, name: str) -> float:
        return median(self.samples(name))

    def ratio(self, numerator: str, denominator: str) -> float:
        """Median over rounds of (block median of ``numerator``) / (block median of ``denominator``)."""
        pairs = zip(self.block_medians(numerator), self.block_medians(denominator))
        return median([a / b for a, b in pairs])

    def summary(self, name: str) -> dict:
        values = self.samples(name)
        p25, p75 = quartiles(values)
        return {"seconds": values, "median_s": median(values), "p25_s": p25, "p75_s": p75,
                "min_s": float(min(values)), "rounds": len(self.blocks[name]), "calls": self.calls.get(name, 1)}


def calls_per_block(seconds_per_call: float, block_seconds: float, lo: int = 3, hi: int = 50) -> int:
    """How many timed calls make a block of about ``block_seconds`` (at least ``lo``, at most ``hi``)."""
    if seconds_per_call <= 0:
        return hi
    return max(lo, min(hi, round(block_seconds / seconds_per_call)))


def run_blocks(groups: Sequence[Mapping[str, Callable[[], object]]], rounds: int, *, block_seconds: float = 0.02,
               warmup_calls: int = 3, clock: Clock = time.perf_counter, settle: Callable[[], object] | None = None,
               on_round: Callable[[int], object] | None = None, max_calls: int = 50) -> Timings:
    """Time every contender in blocks of back-to-back calls, ``rounds`` interleaved rounds.

    The first, untimed round sizes each contender's block (``block_seconds`` of calls, 3 to
    ``max_calls``).  Each block starts with ``warmup_calls`` untimed calls; ``settle`` runs
    before each block and is not timed; ``on_round(i)`` after each round (progress bars).
    Garbage collection is paused during each block.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    names = [name for group in groups for name in group]
    if len(set(names)) != len(names):
        raise ValueError("a contender appears twice")
    calls = {name: 1 for name in names}
    blocks: dict[str, list[list[float]]] = {name: [] for name in names}
    orders: list[list[str]] = []
    idle = 0.0
    for r in range(rounds + 1):  # round 0 sizes the blocks and is not kept
        order = [name for group in rotation(list(groups), r) for name in rotation(list(group), r)]
        for name in order:
            fn = next(group[name] for group in groups if name in group)
            if settle is not None:
                start = clock()
                settle()
                idle += clock() - start
            times = _block(fn, warmup_calls if r else 1, calls[name] if r else 1, clock)
            if r == 0:
                calls[name] = calls_per_block(times[0], block_seconds, hi=max_calls)
            else:
                blocks[name].append(times)
        if r:
            orders.append(order)
        if on_round is not None:
            on_round(r)
    return Timings(blocks, orders, calls, idle)


def time_calls(calls: Sequence[tuple[Callable, tuple]], clock: Clock = time.perf_counter,
               warmup: Sequence[tuple[Callable, tuple]] = ()) -> list[float]:
    """Seconds of each ``fn(*args)`` in ``calls``, back to back after the untimed ``warmup`` calls,
    with garbage collection paused."""
    gc.collect()
    gc.disable()
    try:
        for fn, args in warmup:
            fn(*args)
        times = []
        for fn, args in calls:
            start = clock()
            fn(*args)
            times.append(clock() - start)
        return times
    finally:
        gc.enable()


def _block(fn: Callable[[], object], warmup: int, timed: int, clock: Clock) -> list[float]:
    return time_calls([(fn, ())] * timed, clock, warmup=[(fn, ())] * warmup)


def wait_until_idle(max_wait: float = 0.2, window: float = 0.004, busy_fraction: float = 0.1, *,
                    cpu_clock: Clock = time.process_time, clock: Clock = time.perf_counter,
                    sleep: Callable[[float], object] = time.sleep) -> float:
    """Sleep until this process used less than ``busy_fraction`` of one core over ``window`` s.

    Returns the seconds waited (at most about ``max_wait``).  Other processes do not count:
    only this process's own threads (spinning thread pools) delay the next block.
    """
    start = clock()
    while clock() - start < max_wait:
        cpu0, t0 = cpu_clock(), clock()
        sleep(window)
        used, spent = cpu_clock() - cpu0, clock() - t0
        if used <= busy_fraction * max(spent, window):
            break
    return clock() - start
