"""Clients of a served bundle, all with one interface (``infer``, ``batch_stats``, ``close``) so the load
generator and the tests treat Triton, Ray Serve and the in-process dispatcher alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np

from ..runtime.dispatcher import Dispatcher


class DispatcherTarget:
    """The in-process dispatcher, one request per call (run in a worker thread: the dispatcher is thread-safe)."""

    def __init__(self, dispatcher: Dispatcher):
        self.dispatcher = dispatcher

    async def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = await asyncio.to_thread(self.dispatcher, x)
        return result.logits, result.routes

    async def batch_stats(self) -> dict[str, dict]:
        return {}

    async def close(self) -> None:
        pass


def batched_throughput(dispatcher: Dispatcher, inputs: Sequence[np.ndarray], *, requests: int,
                       batch: int = 8) -> float:
    """Requests per second of the in-process dispatcher fed the same requests ``batch`` at a time, back to back:
    the baseline a server's throughput is compared with."""
    done, start = 0, time.perf_counter()
    while done < requests:
        take = [inputs[(done + i) % len(inputs)] for i in range(min(batch, requests - done))]
        dispatcher(np.concatenate(take))
        done += len(take)
    return requests / (time.perf_counter() - start)
