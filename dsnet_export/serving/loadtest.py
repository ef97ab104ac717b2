"""A load generator for a served bundle: N requests at concurrency C, latency percentiles, throughput, and the
per-route batch sizes the server actually formed.

A target is anything with ``async infer(x) -> (logits, routes)`` and ``async batch_stats() -> {route: stats}``
(see ``clients``); the in-process dispatcher is one too, so a served bundle and the library are measured with
the same loop and the same requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Target(Protocol):
    async def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    async def batch_stats(self) -> dict[str, dict]: ...

    async def close(self) -> None: ...


@dataclass
class LoadReport:
    requests: int
    concurrency: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    errors: list[str] = field(default_factory=list)
    batches: dict[str, dict] = field(default_factory=dict)  # per route: batches, rows, mean_rows, ...

    @property
    def completed(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        """Completed requests per second."""
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def mean_route_batch(self) -> float:
        """Rows per route-engine run, over every route (what cross-request batching achieved)."""
        batches = sum(s.get("batches", 0) for s in self.batches.values())
        rows = sum(s.get("rows", 0) for s in self.batches.values())
        return rows / batches if batches else float("nan")

    def to_dict(self) -> dict:
        return {"requests": self.requests, "completed": self.completed, "errors": len(self.errors),
                "concurrency": self.concurrency, "seconds": round(self.seconds, 4),
                "throughput_rps": round(self.throughput, 2), "p50_ms": round(self.percentile(50), 3),
                "p95_ms": round(self.percentile(95), 3), "p99_ms": round(self.percentile(99), 3),
                "mean_route_batch": round(self.mean_route_batch, 3), "routes": self.batches,
                "first_errors": self.errors[:5]}

    def lines(self) -> list[str]:
        out = [f"{self.completed}/{self.requests} requests at concurrency {self.concurrency} in {self.seconds:.2f} s: "
               f"{self.throughput:.1f} requests/s; latency p50 {self.percentile(50):.2f} ms, "
               f"p95 {self.percentile(95):.2f} ms, p99 {self.percentile(99):.2f} ms"]
        if self.errors:
            out.append(f"{len(self.errors)} errors, first: {self.errors[0]}")
        for route, s in sorted(self.batches.items()):
            out.append(f"  {route}: {s.get('batches', 0)} engine runs, {s.get('rows', 0)} rows, "
                       f"{s.get('mean_rows', 0):.2f} rows per run")
        return out


async def run_load(target: Target, inputs: Sequence[np.ndarray], *, requests: int, concurrency: int,
                   time_limit: float = 300.0) -> LoadReport:
    """Send ``requests`` requests (``inputs`` in turn) with at most ``concurrency`` in flight; stop early after
    ``time_limit`` seconds.  Batch statistics are the server's, taken before and after (their difference)."""
    if requests < 1 or concurrency < 1:
        raise ValueError("requests and concurrency must be at least 1")
    before = await target.batch_stats()
    latencies: list[float] = []
    errors: list[str] = []
    next_index = 0
    deadline = time.monotonic() + time_limit

    async def worker() -> None:
        nonlocal next_index
        while next_index < requests and time.monotonic() < deadline:
            i = next_index
            next_index += 1
            start = time.perf_counter()
            try:
                await target.infer(inputs[i % len(inputs)])
            except Exception as exc:  # noqa: BLE001 - a failed request is counted, the load goes on
                errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                continue
            latencies.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    seconds = time.perf_counter() - start
    after = await target.batch_stats()
    return LoadReport(requests, concurrency, seconds, latencies, errors, _difference(before, after))


def _difference(before: dict[str, dict], after: dict[str, dict]) -> dict[str, dict]:
    out = {}
    for route, s in after.items():
        b = before.get(route, {})
        batches = s.get("batches", 0) - b.get("batches", 0)
        rows = s.get("rows", 0) - b.get("rows", 0)
        if batches > 0:
            out[route] = {"batches": batches, "rows": rows, "mean_rows": round(rows / batches, 3)}
    return out
