"""Soak: one dispatcher under 8 threads (mixed batch sizes, forced routes, gate-bias changes) checked against
single-threaded references, with its memory sampled; and 200 load/close cycles with descriptors, threads and
temporary directories counted.

``DSNET_SOAK_SECONDS`` lengthens the threaded run (CI: a few seconds per thread).  Both tests print their
figures (``pytest -s``) for the record.
"""

from __future__ import annotations

import gc
import os
import random
import tempfile
import threading
import time

import numpy as np
import pytest

from dsnet_export.runtime import Dispatcher

THREADS = 8
SECONDS = float(os.environ.get("DSNET_SOAK_SECONDS", "12"))
CYCLES = 200

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def standin_dirs() -> int:
    return sum(name.startswith("dsnet-standin-") for name in os.listdir(tempfile.gettempdir()))


def test_eight_threads_give_the_single_threaded_results(tiny_bundle, mixed_batch):
    x, centred = mixed_batch
    biases = [centred, centred + np.float32([0.5, 0, 0, -0.5]), np.zeros(4, np.float32)]
    sizes = [1, 2, 3, 5, 8, 13]
    batches = [x[i:i + n] for i, n in zip(range(0, 32, 3), sizes * 2) if len(x[i:i + n]) == n]
    routes = [None, 0, 3, "uniform:4", "largest"]
    with Dispatcher.load(tiny_bundle.path) as d:
        # References, one thread: every (batch, bias, route) a worker may draw.
        reference = {}
        for b, batch in enumerate(batches):
            for k, bias in enumerate(biases):
                d.gate_bias = bias
                for route in routes:
                    reference[b, k, route] = d.run(batch, route)
        failures, calls, samples = [], [0] * THREADS, []
        stop = time.monotonic() + SECONDS
        current = [0]  # index of the bias in effect (a worker sets it together with gate_bias)
        lock = threading.Lock()

        def worker(t: int) -> None:
            rng = random.Random(t)
            while time.monotonic() < stop and not failures:
                b, route = rng.randrange(len(batches)), rng.choice(routes)
                if t == 0 and rng.random() < 0.2:  # one thread turns the budget knob as a service would
                    k = rng.randrange(len(biases))
                    with lock:
                        d.gate_bias, current[0] = biases[k], k
                got = d.run(batches[b], route)
                # The bias may change mid-call: the result must be the one of *some* bias, whole.
                candidates = [reference[b, k, route] for k in range(len(biases))]
                if not any(np.array_equal(got.routes, ref.routes)
                           and np.allclose(got.logits, ref.logits, atol=1e-5, rtol=0) for ref in candidates):
                    failures.append(f"thread {t}: batch {b} route {route}: no reference matches")
                calls[t] += 1

        def sampler() -> None:
            while time.monotonic() < stop:
                samples.append(rss_mb())
                time.sleep(0.25)

        workers = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
        workers.append(threading.Thread(target=sampler))
        start_rss = rss_mb()
        for w in workers:
            w.start()
        for w in workers:
            w.join(SECONDS + 60)
        assert not any(w.is_alive() for w in workers), "a worker hung"
    assert failures == []
    assert min(calls) > 0, calls
    quarter = max(len(samples) // 4, 1)
    early, late = np.median(samples[:quarter]), np.median(samples[-quarter:])
    print(f"\nsoak: {THREADS} threads x {SECONDS:.0f} s, {sum(calls)} calls ({min(calls)}..{max(calls)} per thread), "
          f"RSS {start_rss:.1f} MB at start, median {early:.1f} MB first quarter -> {late:.1f} MB last quarter, "
          f"peak {max(samples):.1f} MB")
    assert late - early < 25, f"RSS grew from {early:.1f} MB to {late:.1f} MB under load"


def test_load_close_cycles_leak_nothing(tiny_bundle, mixed_batch):
    x = mixed_batch[0][:4]
    expected = None
    counts, dirs_before = [], standin_dirs()
    for cycle in range(CYCLES):
        lazy = cycle % 2 == 1
        with Dispatcher.load(tiny_bundle.path, lazy=lazy) as d:
            result = d(x)
        if expected is None:
            expected = result
        assert np.array_equal(result.routes, expected.routes)
        if cycle in (9, CYCLES // 2, CYCLES - 1):  # after a warm-up: ONNX Runtime's own one-off allocations
            gc.collect()
            counts.append((cycle + 1, open_fds(), os_threads(), standin_dirs(), rss_mb()))
    print("\nload/close cycles (cycle, fds, threads, temp dirs, RSS MB): " + "; ".join(
        f"{c} {f} {t} {s} {r:.1f}" for c, f, t, s, r in counts))
    (_, fds0, threads0, dirs0, rss0), *_, (_, fds1, threads1, dirs1, rss1) = counts
    assert (fds1, threads1, dirs1) == (fds0, threads0, dirs0), counts
    assert dirs1 <= dirs_before  # each dispatcher's stand-in directory is gone with it
    assert rss1 - rss0 < 40, f"RSS grew {rss1 - rss0:.1f} MB over {CYCLES - 10} cycles"
