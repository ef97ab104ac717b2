"""Interleaved timing rounds and their medians.

Every round calls each contender once, in an order rotated by one place per round, so slow
drifts of a shared, noisy machine (other jobs, clock changes, cache state) fall on every
contender alike; the median over rounds then ignores the occasional outlier.

ONNX Runtime's worker threads keep spinning for tens of milliseconds after a session run
(about 70 ms of one core, measured with onnxruntime 1.32 on this project's 2-core machine).
A contender timed while another session's threads still spin loses cores it would have in a
deployment, where it runs alone.  ``wait_until_idle`` therefore waits, before each timed
call, until this process has used (almost) no CPU time for a short window, up to a cap.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

Clock = Callable[[], float]


def rotation(names: Sequence[str], round_index: int) -> list[str]:
    """``names`` rotated left by ``round_index`` places: round r starts with contender r mod n."""
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


@dataclass
class Timings:
    """Seconds per timed call of every contender, in round order, and the order of each round."""

    samples: dict[str, list[float]]
    orders: list[list[str]] = field(default_factory=list)
    idle_wait_s: float = 0.0  # total time spent waiting for the process to go idle

    def median(self, name: str) -> float:
        return median(self.samples[name])

    def medians(self) -> dict[str, float]:
        return {name: median(values) for name, values in self.samples.items()}

    def summary(self, name: str) -> dict:
        values = self.samples[name]
        p25, p75 = quartiles(values)
        return {"seconds": list(values), "median_s": median(values), "p25_s": p25, "p75_s": p75,
                "min_s": float(min(values)), "rounds": len(values)}


def run_rounds(contenders: Mapping[str, Callable[[], object]], rounds: int, *, warmup: int = 1,
               clock: Clock = time.perf_counter, settle: Callable[[], object] | None = None,
               on_round: Callable[[int], object] | None = None) -> Timings:
    """Time every contender once per round, in rotating order; ``warmup`` untimed rounds first.

    ``settle`` runs before every call (timed or not) and is not timed; ``on_round(i)`` after
    each round (progress bars).  Garbage collection is paused during each round.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    orders: list[list[str]] = []
    idle = 0.0
    for r in range(warmup + rounds):
        order = rotation(names, r)
        timed = r >= warmup
        gc.collect()
        gc.disable()
        try:
            for name in order:
                if settle is not None:
                    start = clock()
                    settle()
                    idle += clock() - start
                start = clock()
                contenders[name]()
                elapsed = clock() - start
                if timed:
                    samples[name].append(elapsed)
        finally:
            gc.enable()
        if timed:
            orders.append(order)
        if on_round is not None:
            on_round(r)
    return Timings(samples, orders, idle)


def wait_until_idle(max_wait: float = 0.2, window: float = 0.004, busy_fraction: float = 0.1, *,
                    cpu_clock: Clock = time.process_time, clock: Clock = time.perf_counter,
                    sleep: Callable[[float], object] = time.sleep) -> float:
    """Sleep until this process used less than ``busy_fraction`` of one core over ``window`` s.

    Returns the seconds waited (at most about ``max_wait``).  Other processes do not count:
    only this process's own threads (spinning thread pools) delay the next timed call.
    """
    start = clock()
    while clock() - start < max_wait:
        cpu0, t0 = cpu_clock(), clock()
        sleep(window)
        used, spent = cpu_clock() - cpu0, clock() - t0
        if used <= busy_fraction * max(spent, window):
            break
    return clock() - start
