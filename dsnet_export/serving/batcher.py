"""An asyncio batcher keyed by route: requests queued for the same key within a short wait run as one batch.

Serving engines batch per model, not per key: Ray Serve's ``serve.batch`` batches one method's calls, and a
dynamic network needs the rows that the gate sent to the *same* route batched together across requests.  The
batcher takes ``(key, rows)`` submissions, runs each key's queue when it holds ``max_samples`` rows or its oldest
submission has waited ``max_wait_ms``, splits a batch larger than the engine's ``max_batch``, and hands each
submitter its own rows of the result.

While a key's engine is busy (``max_inflight`` batches of it running), its queue keeps filling and runs the
moment one finishes: under load, batches grow by themselves, and a lone request waits ``max_wait_ms`` at most.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from .routing import split_rows

RunBatch = Callable[[Hashable, np.ndarray], "Awaitable[np.ndarray] | np.ndarray"]


@dataclass
class BatchStats:
    """Batches formed for one key: how many, and how many rows and submissions each held."""

    batches: int = 0
    rows: int = 0
    submissions: int = 0
    sizes: list[int] = field(default_factory=list)  # rows per batch, the most recent 10,000

    def add(self, rows: int, submissions: int) -> None:
        self.batches += 1
        self.rows += rows
        self.submissions += submissions
        self.sizes.append(rows)
        del self.sizes[:-10_000]

    @property
    def mean_rows(self) -> float:
        return self.rows / self.batches if self.batches else 0.0

    def to_dict(self) -> dict:
        return {"batches": self.batches, "rows": self.rows, "submissions": self.submissions,
                "mean_rows": round(self.mean_rows, 3), "max_rows": max(self.sizes, default=0)}


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future


class KeyedBatcher:
    """``await batcher.submit(key, rows)`` -> ``run(key, batch)``'s rows for ``rows``.

    ``run`` may be a coroutine function or a plain one (a plain one runs in the loop's default executor, so
    the loop keeps queueing while an engine runs).  ``max_samples``: rows at which a queue runs at once;
    ``max_wait_ms``: the longest a submission waits for others; ``max_batch``: the engine's batch limit (a
    larger batch runs in slices).  ``max_inflight``: batches of one key running at once (an int for every key,
    or a mapping per key; None: no limit), e.g. the replicas of the engine behind the key.  Use from one event
    loop."""

    def __init__(self, run: RunBatch, *, max_samples: int = 32, max_wait_ms: float = 2.0,
                 max_batch: int | None = None, max_inflight: int | dict | None = 1):
        if max_samples < 1 or max_wait_ms < 0 or (max_batch is not None and max_batch < 1):
            raise ValueError("max_samples and max_batch must be at least 1 and max_wait_ms at least 0")
        limits = max_inflight.values() if isinstance(max_inflight, dict) else [max_inflight]
        if any(v is not None and v < 1 for v in limits):
            raise ValueError("max_inflight must be at least 1 (or None: no limit)")
        self.max_inflight = max_inflight
        self._running: dict[Hashable, int] = {}
        self._run = run
        self._is_async = inspect.iscoroutinefunction(run)
        self.max_samples, self.max_wait, self.max_batch = max_samples, max_wait_ms / 1000, max_batch
        self._queues: dict[Hashable, list[_Pending]] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()
        self.stats: dict[Hashable, BatchStats] = {}

    async def submit(self, key: Hashable, rows: np.ndarray) -> np.ndarray:
        """The result rows of ``rows`` [n, ...] once its batch has run (``run``'s exception if it failed)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        queue = self._queues.setdefault(key, [])
        queue.append(_Pending(rows, future))
        if self._busy(key):
            pass  # runs when a batch of this key finishes
        elif sum(len(p.rows) for p in queue) >= self.max_samples:
            self._flush(key)
        elif key not in self._timers:
            self._timers[key] = loop.call_later(self.max_wait, self._flush, key)
        return await future

    def _limit(self, key: Hashable) -> int | None:
        if isinstance(self.max_inflight, dict):
            return self.max_inflight.get(key, 1)
        return self.max_inflight

    def _busy(self, key: Hashable) -> bool:
        limit = self._limit(key)
        return limit is not None and self._running.get(key, 0) >= limit

    def _flush(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if self._busy(key):
            return  # the batch in flight flushes the queue when it finishes
        queue = self._queues.pop(key, [])
        taken, rows = [], 0
        while queue and (not taken or rows + len(queue[0].rows) <= self.max_samples):
            pending = queue.pop(0)
            if not pending.future.cancelled():
                taken.append(pending)
                rows += len(pending.rows)
        if queue:  # what did not fit waits for the next batch, which is due now
            self._queues[key] = queue
            self._timers[key] = asyncio.get_running_loop().call_soon(self._flush, key)
        if taken:
            self._running[key] = self._running.get(key, 0) + 1
            task = asyncio.get_running_loop().create_task(self._run_batch(key, taken))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, key: Hashable, taken: list[_Pending]) -> None:
        try:
            await self._run_taken(key, taken)
        finally:
            self._running[key] -= 1
            if self._queues.get(key):  # queued while the engine was busy: they have waited already
                self._flush(key)

    async def _run_taken(self, key: Hashable, taken: list[_Pending]) -> None:
        batch = taken[0].rows if len(taken) == 1 else np.concatenate([p.rows for p in taken])
        try:
            outputs = [await self._call(key, batch[part]) for part in split_rows(len(batch), self.max_batch)]
            result = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
            if len(result) != len(batch):
                raise RuntimeError(f"{key!r}: the engine returned {len(result)} rows for {len(batch)}")
        except Exception as exc:  # noqa: BLE001 - every submitter of the batch gets the engine's error
            for pending in taken:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        self.stats.setdefault(key, BatchStats()).add(len(batch), len(taken))
        start = 0
        for pending in taken:
            end = start + len(pending.rows)
            if not pending.future.done():
                pending.future.set_result(result[start:end])
            start = end

    async def _call(self, key: Hashable, batch: np.ndarray) -> np.ndarray:
        if self._is_async:
            return await self._run(key, batch)
        result = await asyncio.get_running_loop().run_in_executor(None, self._run, key, batch)
        return await result if inspect.isawaitable(result) else result

    async def aclose(self) -> None:
        """Run what is queued and wait for every batch in flight."""
        for key in list(self._queues):
            self._flush(key)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
