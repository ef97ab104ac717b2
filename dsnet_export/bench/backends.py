"""Another backend against ONNX Runtime on the same bundle (``bench DIR --backend openvino``).

For every batch size: each gate route forced, and the dynamic network (batch 1: one sample at a time, cycling
through a pool whose gate choices cover the routes; larger batches: a mixed batch, round-robin over the routes, as
in section (b) of the main bench).  Each case is one group of two contenders, the ONNX Runtime dispatcher and the
other backend's, timed in interleaved blocks of back-to-back calls (``timing.run_blocks``); the ratio is the
median of per-round ratios, other / ONNX Runtime.  Outputs are compared too, so a fast wrong backend shows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..runtime import Dispatcher, load_bundle
from ..runtime.backends.ort import OrtOptions
from ..tables import format_table
from .mixed import choose_mixed, synthetic_pool
from .settings import BenchSettings
from .timing import run_blocks, wait_until_idle

POOL = 64


def compare_backends(bundle_dir: str | os.PathLike, backend: str, options: Any = None,
                     settings: BenchSettings | None = None) -> dict:
    """Time ``backend`` (with ``options``) against ONNX Runtime on ``bundle_dir``; a JSON-ready report."""
    settings = settings or BenchSettings()
    settings.check()
    started = time.perf_counter()
    bundle = load_bundle(bundle_dir, verify=True)
    m = bundle.manifest
    gate_routes = [m.routes[k] for k in m.gate.routes]
    rng = np.random.default_rng(settings.seed)
    settle = (lambda: wait_until_idle(settings.idle_wait)) if settings.idle_wait > 0 else None
    ort_options = OrtOptions(threads=settings.threads)
    groups: list[dict[str, Callable[[], object]]] = []
    rows: list[dict] = []
    with Dispatcher.load(bundle.root, "ort", ort_options, verify=False) as ort, \
            Dispatcher.load(bundle.root, backend, options, verify=False) as other:
        pool = synthetic_pool(POOL, tuple(m.input.shape), settings.seed)
        pool_logits = ort.gate_logits(pool)
        for batch in dict.fromkeys(settings.batch_sizes):
            x = rng.standard_normal((batch, *m.input.shape)).astype(np.float32)
            for r in gate_routes:
                rows.append(_case(groups, f"route {r.index} {r.name}", batch, r.macs,
                                  (lambda d, x=x, k=r.index: d.run(x, k)), ort, other))
            mixed = choose_mixed(pool_logits, min(batch, POOL) if batch > 1 else POOL)
            ort.gate_bias = other.gate_bias = mixed.bias
            if batch == 1:  # one sample per call, cycling through samples of every route
                samples = [pool[i:i + 1] for i in mixed.indexes]
                rows.append(_case(groups, "dynamic, 1 sample per call", 1, None, _cycling(samples), ort, other))
            else:
                xb = np.ascontiguousarray(pool[mixed.indexes])
                rows.append(_case(groups, f"dynamic, mixed batch (routes {','.join(map(str, mixed.routes))})",
                                  batch, None, (lambda d, xb=xb: d(xb)), ort, other))
        timings = run_blocks(groups, settings.rounds, block_seconds=settings.block_seconds,
                             warmup_calls=settings.warmup, settle=settle)
        info = {"backend": backend, "options": repr(other.backend.options) if hasattr(other.backend, "options") else "",
                "shared_weights": other.shared_weights}
    for row in rows:
        row["ort_ms"] = 1e3 * timings.median(row["ort"])
        row["other_ms"] = 1e3 * timings.median(row["other"])
        row["ratio"] = timings.ratio(row["other"], row["ort"])
    return {"bundle": str(bundle.root), "arch": m.arch.get("name", ""), "settings": {
        "rounds": settings.rounds, "batch_sizes": list(settings.batch_sizes), "threads": settings.threads},
        **info, "rows": rows, "elapsed_s": time.perf_counter() - started}


def _cycling(samples: list[np.ndarray]) -> Callable[[Dispatcher], object]:
    """A call that runs the next sample each time (per dispatcher), so a block sees every route."""
    position: dict[int, int] = {}

    def call(d: Dispatcher):
        i = position.get(id(d), 0)
        position[id(d)] = i + 1
        return d(samples[i % len(samples)])
    return call


def _case(groups: list, what: str, batch: int, macs: int | None, call, ort: Dispatcher, other: Dispatcher) -> dict:
    """One timed pair; its outputs compared once before timing."""
    names = {"ort": f"ort/{what}/b{batch}", "other": f"other/{what}/b{batch}"}
    groups.append({names["ort"]: lambda: call(ort), names["other"]: lambda: call(other)})
    a, b = call(ort), call(other)
    diff = float(np.max(np.abs(a.logits - b.logits)))
    same_routes = bool(np.array_equal(a.routes, b.routes))
    return {"case": what, "batch": batch, "macs": macs, **names, "max_abs_diff": diff, "same_routes": same_routes}


def format_backend_report(data: dict) -> str:
    lines = [f"dsnet-export bench: {data['bundle']} ({data['arch']}): {data['backend']} vs ONNX Runtime, "
             f"{data['settings']['rounds']} interleaved rounds of back-to-back blocks, medians "
             f"({data['options']}; weights shared: {'yes' if data['shared_weights'] else 'no, a copy per engine'})"]
    lines.append(format_table(
        ["batch", "case", "MAdds", "ONNX Runtime", data["backend"], f"{data['backend']} / ORT", "max|diff|",
         "same routes"],
        [[r["batch"], r["case"], "-" if r["macs"] is None else f"{r['macs'] / 1e6:.2f}M", f"{r['ort_ms']:.2f} ms",
          f"{r['other_ms']:.2f} ms", f"{r['ratio']:.3f}", f"{r['max_abs_diff']:.1e}",
          "yes" if r["same_routes"] else "NO"] for r in data["rows"]]))
    lines.append(f"    {data['backend']} / ORT below 1: {data['backend']} is faster; ratio = median over rounds of the "
                 f"two block medians' ratio")
    lines.append(f"bench took {data['elapsed_s']:.0f} s")
    return "\n".join(lines)
