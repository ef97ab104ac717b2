"""``run_bench``: every measurement of ``python -m dsnet_export bench`` in one interleaved run.

Contenders (each timed once per round, rounds in rotating order, medians reported):

* ``dispatcher/route<k>/b<B>``: ``Dispatcher.run(x, route=k)`` (gate engine + route k engine);
* ``monolithic/route<k>/b<B>``: one ONNX model of subnet k with the same weights;
* ``monolithic-dispopts/route<k>/b<B>``: that model in a session with the dispatcher's options, and
  ``engines/route<k>/b<B>``: the gate and route engines run by two plain ``session.run`` calls
  (the overhead's causes: thread policy, split into two graphs, the dispatcher's Python);
* ``dispatcher/mixed/b<B>``: per-sample routing of a batch that mixes the gate's routes;
* ``masking-torch/b<B>`` and ``masking-onnx/b<B>``: the official full-width masking on that batch.

From their medians: (a) dispatcher/monolithic per route and batch, (b) masking/dispatcher on
the mixed batch, (c) the narrowest-to-widest latency ratio against the MAdds ratio; and, in
fresh processes, (d) memory and cold start of the dispatcher against one standalone model
per route.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import numpy as np

from ..arch import route_cost
from ..errors import DsnetError
from ..runtime import Dispatcher, load_bundle
from . import memory as memory_module
from .contenders import (
    BundleContext,
    DispatcherOptions,
    MaskedOnnx,
    Monolithic,
    make_session,
    masked_model,
    monolithic_model,
    write_naive_deployment,
)
from .masking_onnx import masking_width
from .mixed import choose_mixed, synthetic_pool
from .settings import OVERHEAD_GOAL, SCHEMA, SCHEMA_VERSION, SPEEDUP_GOAL, BenchSettings
from .timing import run_rounds, wait_until_idle

POOL_SIZE = 64
MEMORY_WARMUP = 1  # fresh processes of each kind left out of the memory medians


def run_bench(bundle_dir: str | os.PathLike, settings: BenchSettings | None = None) -> dict:
    """Run the whole bench on a bundle; returns the report (JSON-ready, see ``report``)."""
    settings = settings or BenchSettings()
    settings.check()
    started = time.perf_counter()
    notes: list[str] = []
    bundle = load_bundle(bundle_dir, verify=True)
    ctx = BundleContext.open(bundle)
    m = bundle.manifest
    gate_routes = [m.routes[k] for k in m.gate.routes]
    batch_sizes = tuple(dict.fromkeys(settings.batch_sizes))
    rng = np.random.default_rng(settings.seed)
    bar = _Progress(settings.progress)

    torch_masking, torch_note = _torch_masking(ctx, settings)
    if torch_note:
        notes.append(torch_note)

    contenders: dict[str, Callable[[], object]] = {}
    overhead, mixed = [], []
    with Dispatcher.load(bundle.root, threads=settings.threads, verify=False,
                         shared_pool=settings.shared_pool) as dispatcher, \
            tempfile.TemporaryDirectory(prefix="dsnet-bench-") as tmp, \
            closing(DispatcherOptions(bundle, settings.threads, settings.shared_pool)) as dispatcher_options:
        bar.status("building the monolithic and masked models")
        pool = settings.shared_pool
        protos = {r.index: monolithic_model(ctx, r) for r in gate_routes}
        monolithic = {k: Monolithic(make_session(proto, settings.threads, pool)) for k, proto in protos.items()}
        same_options = {k: Monolithic(dispatcher_options.session(proto)) for k, proto in protos.items()}
        engines = {r.index: dispatcher_options.engines(r) for r in gate_routes}
        masked = MaskedOnnx(make_session(masked_model(ctx), settings.threads, pool))

        # (a) forced routes against the monolithic models (and the overhead's causes)
        for batch in batch_sizes:
            x = rng.standard_normal((batch, *m.input.shape)).astype(np.float32)
            for r in gate_routes:
                names = {kind: f"{kind.replace('_', '-')}/route{r.index}/b{batch}"
                         for kind in ("dispatcher", "monolithic", "monolithic_dispopts", "engines")}
                contenders[names["dispatcher"]] = _bind(dispatcher.run, x, route=r.index)
                contenders[names["monolithic"]] = _bind(monolithic[r.index], x)
                contenders[names["monolithic_dispopts"]] = _bind(same_options[r.index], x)
                contenders[names["engines"]] = _bind(engines[r.index], x)
                expected = dispatcher.run(x, route=r.index).logits
                diff = max(_max_diff(expected, model(x))
                           for model in (monolithic[r.index], same_options[r.index], engines[r.index]))
                overhead.append({"batch": batch, "route": r.index, "name": r.name, "macs": r.macs, **names,
                                 "max_abs_diff": diff})

        # (b) mixed batches against masking
        pool, source = _pool(settings, m)
        pool_logits = np.concatenate([dispatcher.gate_logits(pool[i:i + 16]) for i in range(0, len(pool), 16)])
        for batch in (b for b in batch_sizes if b > 1):
            if batch > len(pool):
                notes.append(f"mixed batch of {batch} skipped: the input pool has only {len(pool)} samples")
                continue
            choice = choose_mixed(pool_logits, batch)
            x = np.ascontiguousarray(pool[choice.indexes])
            row = _mixed_row(ctx, dispatcher, masked, torch_masking, x, choice, batch, source)
            mixed.append(row)
            contenders[row["dispatcher"]] = _bind(_dispatch_with_bias, dispatcher, x, choice.bias)
            contenders[row["masking_onnx"]] = _bind(masked, x, choice.bias)
            if torch_masking is not None:
                contenders[row["masking_torch"]] = torch_masking.contender(x, choice.bias)
                contenders[row["masking_torch_official"]] = torch_masking.contender(x, choice.bias, official=True)

        # all of them, interleaved
        total = settings.warmup + settings.rounds
        bar.start(total, "timing rounds")
        timings = run_rounds(contenders, settings.rounds, warmup=settings.warmup,
                             settle=(lambda: wait_until_idle(settings.idle_wait)) if settings.idle_wait > 0 else None,
                             on_round=lambda r: bar.update())
        bar.close()

        naive_files = write_naive_deployment(ctx, Path(tmp) / "naive")
        naive_bytes = sum(p.stat().st_size for p in naive_files)
        memory = None
        if settings.memory:
            runs = settings.memory_runs
            bar.start(2 * (runs + MEMORY_WARMUP), "memory and cold start (fresh processes)")
            raw = memory_module.measure(bundle.root, naive_files, runs, settings.threads, on_run=lambda k: bar.update(),
                                        warmup=MEMORY_WARMUP)
            bar.close()
            memory = _memory_summary(raw, bundle, naive_files, naive_bytes)
    if torch_masking is not None:
        torch_masking.restore()

    medians = timings.medians()
    for row in overhead:
        row["dispatcher_ms"] = 1e3 * medians[row["dispatcher"]]
        row["monolithic_ms"] = 1e3 * medians[row["monolithic"]]
        row["ratio"] = row["dispatcher_ms"] / row["monolithic_ms"]
        row["goal"] = OVERHEAD_GOAL
        row["monolithic_dispopts_ms"] = 1e3 * medians[row["monolithic_dispopts"]]
        row["engines_ms"] = 1e3 * medians[row["engines"]]
        # dispatcher / monolithic = thread policy x split into two graphs x the dispatcher's Python
        row["ratio_thread_policy"] = row["monolithic_dispopts_ms"] / row["monolithic_ms"]
        row["ratio_split"] = row["engines_ms"] / row["monolithic_dispopts_ms"]
        row["ratio_python"] = row["dispatcher_ms"] / row["engines_ms"]
    for row in mixed:
        row["dispatcher_ms"] = 1e3 * medians[row["dispatcher"]]
        row["masking_onnx_ms"] = 1e3 * medians[row["masking_onnx"]]
        row["speedup_onnx"] = row["masking_onnx_ms"] / row["dispatcher_ms"]
        for variant in ("torch", "torch_official"):
            if row[f"masking_{variant}"] is not None:
                row[f"masking_{variant}_ms"] = 1e3 * medians[row[f"masking_{variant}"]]
                row[f"speedup_{variant}"] = row[f"masking_{variant}_ms"] / row["dispatcher_ms"]
        row["goal"] = SPEEDUP_GOAL
    notes += _standard_notes(ctx, settings, mixed)
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "bundle": _bundle_info(ctx),
        "settings": {"rounds": settings.rounds, "warmup": settings.warmup, "batch_sizes": list(batch_sizes),
                     "threads": settings.threads, "shared_pool": settings.shared_pool,
                     "torch": torch_masking is not None, "memory": settings.memory,
                     "memory_runs": settings.memory_runs if settings.memory else 0,
                     "idle_wait_max_s": settings.idle_wait, "data": list(settings.data), "seed": settings.seed},
        "environment": _environment(torch_masking),
        "contenders": {name: timings.summary(name) for name in contenders},
        "round_orders": timings.orders,
        "idle_wait_total_s": timings.idle_wait_s,
        "overhead": overhead,
        "mixed": mixed,
        "efficiency": _efficiency(overhead, gate_routes),
        "memory": memory,
        "notes": notes,
        "elapsed_s": time.perf_counter() - started,
    }


# -- pieces ------------------------------------------------------------------------------
def _bind(fn, *args, **kwargs) -> Callable[[], object]:
    return lambda: fn(*args, **kwargs)


def _dispatch_with_bias(dispatcher: Dispatcher, x: np.ndarray, bias: np.ndarray):
    dispatcher.gate_bias = bias  # cheap: the property swaps one array
    return dispatcher(x)


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def _pool(settings: BenchSettings, m) -> tuple[np.ndarray, str]:
    if settings.data:
        from ..runtime.inputs import iter_inputs

        arrays = [item.array for item in iter_inputs(settings.data, m.input)]
        pool = np.concatenate(arrays) if arrays else np.empty((0, *m.input.shape), np.float32)
        if pool.shape[0] == 0:
            raise DsnetError("--data: no samples found")
        return np.ascontiguousarray(pool, dtype=np.float32), ", ".join(settings.data)
    return synthetic_pool(POOL_SIZE, tuple(m.input.shape), settings.seed), "synthetic"


def _mixed_row(ctx: BundleContext, dispatcher, masked: MaskedOnnx, torch_masking, x, choice, batch: int,
               source: str) -> dict:
    m = ctx.bundle.manifest
    dispatcher.gate_bias = choice.bias
    result = dispatcher(x)
    onnx_logits, _ = masked(x, choice.bias)
    expected_routes = [m.gate.routes[g] for g in choice.routes]
    if result.routes.tolist() != expected_routes:
        raise AssertionError("the dispatcher routed the mixed batch differently from the gate logits it was "
                             "chosen with")  # a bug
    row = {
        "batch": batch, "source": source, "biased": bool(choice.biased),
        "gate_bias": [float(b) for b in choice.bias], "routes": result.routes.tolist(),
        "histogram": np.bincount(choice.routes, minlength=len(m.gate.routes)).tolist(),
        "avg_macs": float(result.macs.mean()),
        "masking_macs": route_cost(ctx.spec, masking_width(ctx.spec), ctx.input_hw).macs,
        "masking_width": masking_width(ctx.spec),
        "dispatcher": f"dispatcher/mixed/b{batch}", "masking_onnx": f"masking-onnx/b{batch}",
        "masking_torch": None, "masking_torch_ms": None, "speedup_torch": None, "max_abs_diff_torch": None,
        "masking_torch_official": None, "masking_torch_official_ms": None, "speedup_torch_official": None,
        "max_abs_diff_torch_official": None,
        "max_abs_diff_onnx": _max_diff(onnx_logits, result.logits),
        "max_abs_logit": float(np.max(np.abs(result.logits))),
    }
    row["macs_ratio"] = row["masking_macs"] / row["avg_macs"]
    if torch_masking is not None:
        for variant, official in (("torch", False), ("torch_official", True)):
            logits, routes = torch_masking.check(x, choice.bias, official=official)
            if [m.gate.routes[g] for g in routes] != expected_routes:
                raise AssertionError("torch masking routed the mixed batch differently")  # a bug
            row[f"masking_{variant}"] = f"masking-{variant.replace('_', '-')}/b{batch}"
            row[f"max_abs_diff_{variant}"] = _max_diff(logits, result.logits)
    return row


class _TorchContender:
    """The PyTorch masking baseline on a supernet rebuilt from the bundle's tensors."""

    def __init__(self, ctx: BundleContext, threads: int | None):
        import torch

        from .masking_torch import TorchMasking, supernet_from_bundle

        self.torch = torch
        self._threads_before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        net = supernet_from_bundle(ctx.spec, ctx.sources)
        self.masking = {False: TorchMasking(net), True: TorchMasking(net, official_ops=True)}
        self.version = torch.__version__

    def contender(self, x: np.ndarray, bias: np.ndarray, official: bool = False) -> Callable[[], object]:
        xt, bt, masking = self.torch.from_numpy(x), self.torch.from_numpy(bias), self.masking[official]
        return lambda: masking(xt, bt)

    def check(self, x: np.ndarray, bias: np.ndarray, official: bool = False) -> tuple[np.ndarray, list[int]]:
        out = self.masking[official](self.torch.from_numpy(x), self.torch.from_numpy(bias))
        return out.logits.numpy(), out.routes.tolist()

    @property
    def threads(self) -> int:
        return self.torch.get_num_threads()

    def restore(self) -> None:
        self.torch.set_num_threads(self._threads_before)


def _torch_masking(ctx: BundleContext, settings: BenchSettings):
    if not settings.torch:
        return None, "PyTorch masking skipped (--no-torch)"
    from .masking_torch import torch_available

    if not torch_available():
        return None, ("PyTorch masking skipped: torch is not installed (pip install torch==2.13.0 for the "
                      "PyTorch masking column)")
    return _TorchContender(ctx, settings.threads), None


def _efficiency(overhead: list[dict], gate_routes) -> list[dict]:
    """Narrowest -> widest gate route: realised latency ratio against the MAdds ratio."""
    narrow = min(gate_routes, key=lambda r: r.macs)
    wide = max(gate_routes, key=lambda r: r.macs)
    rows = []
    for batch in dict.fromkeys(row["batch"] for row in overhead):
        by_route = {row["route"]: row for row in overhead if row["batch"] == batch}
        for engine in ("dispatcher", "monolithic"):
            t_narrow, t_wide = by_route[narrow.index][f"{engine}_ms"], by_route[wide.index][f"{engine}_ms"]
            theoretical = wide.macs / narrow.macs
            realised = t_wide / t_narrow
            rows.append({"batch": batch, "engine": engine, "narrow_route": narrow.name, "wide_route": wide.name,
                         "narrow_macs": narrow.macs, "wide_macs": wide.macs, "narrow_ms": t_narrow,
                         "wide_ms": t_wide, "realised": realised, "theoretical": theoretical,
                         "fraction": (realised - 1) / (theoretical - 1) if theoretical > 1 else None,
                         "ms_per_gmacs": [by_route[r.index][f"{engine}_ms"] / (r.macs / 1e9) / batch
                                          for r in gate_routes]})
    return rows


def _median_of(runs: list[dict], key: str) -> float:
    return float(np.median([run[key] for run in memory_module.measured(runs)]))


def _memory_summary(raw: dict[str, list[dict]], bundle, naive_files, naive_bytes: int) -> dict:
    keys = ("load_rss", "first_call_rss", "load_anon", "first_call_anon", "first_call_file", "load_s",
            "first_call_s", "cold_start_s", "import_s", "baseline_rss", "interpreter_rss")
    median = {kind: {k: _median_of(runs, k) for k in keys} for kind, runs in raw.items()}
    median["dispatcher"]["hash_check_s"] = _median_of(raw["dispatcher"], "hash_check_s")
    ratio = {k: median["dispatcher"][k] / median["naive"][k] if median["naive"][k] else None
             for k in ("load_rss", "first_call_rss", "first_call_anon", "load_s", "first_call_s", "cold_start_s")}
    m = bundle.manifest
    used = [m.weights, m.gate.file, *(r.file for r in m.routes)]
    return {"runs": raw, "median": median, "ratio": ratio, "naive_files": len(naive_files),
            "naive_bytes": naive_bytes, "bundle_bytes": sum(m.files[f].size for f in used)}


def _bundle_info(ctx: BundleContext) -> dict:
    m = ctx.bundle.manifest
    return {"path": str(ctx.bundle.root), "name": m.name, "arch": ctx.spec.name, "input_shape": list(m.input.shape),
            "gate_macs": m.gate.macs, "gate_routes": list(m.gate.routes),
            "routes": [{"index": r.index, "name": r.name, "kind": r.kind, "macs": r.macs, "widths": list(r.widths)}
                       for r in m.routes]}


def _environment(torch_masking) -> dict:
    import onnxruntime as ort

    return {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "onnxruntime": ort.__version__, "numpy": np.__version__,
            "torch": torch_masking.version if torch_masking is not None else None,
            "torch_threads": torch_masking.threads if torch_masking is not None else None}


def _standard_notes(ctx: BundleContext, settings: BenchSettings, mixed: list[dict]) -> list[str]:
    notes = []
    for row in mixed:
        how = ("the gate's own choices" if not row["biased"]
               else "a per-route gate bias (the compute-budget knob) that spreads the pool over the routes, "
                    "applied by every contender")
        scored = f"{POOL_SIZE} synthetic images" if row["source"] == "synthetic" else f"the inputs in {row['source']}"
        notes.append(f"mixed batch of {row['batch']}: {scored} scored by the gate; samples taken round-robin over "
                     f"the routes under {how}")
    notes.append(f"masking runs the gated stages at full width ({masking_width(ctx.spec)}, "
                 f"{route_cost(ctx.spec, masking_width(ctx.spec), ctx.input_hw).macs / 1e6:.2f}M MAdds) with "
                 f"per-sample channel masks and BN statistics; tensors beyond the bundle's stored prefixes are "
                 f"zero-filled (they only meet masked channels)")
    if settings.torch and any(row["masking_torch"] for row in mixed):
        notes.append("masking torch: a lean masking (mask and statistic tables built once, one multiply per mask; "
                     "the goal is judged against it); masking torch official ops: as the official code runs it "
                     "(statistics stacked on every BN call, masks by its per-width loop)")
    notes.append("overhead breakdown: dispatcher / monolithic = (monolithic in a session with the dispatcher's "
                 "options: its worker threads never spin, see runtime/backends/ort/sessions.py) / monolithic "
                 "x (gate + route engines, two plain session.run calls) / that x dispatcher / engines "
                 "(the dispatcher's own Python per call: input checks, routing, output buffers)")
    if settings.idle_wait > 0:
        notes.append(f"before every timed call the bench waits (up to {settings.idle_wait * 1e3:.0f} ms) until the "
                     f"process is idle: ONNX Runtime's worker threads spin after each run and would steal cores "
                     f"from the next contender")
    return notes


class _Progress:
    """tqdm when installed and wanted, otherwise silent."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = None

    def status(self, text: str) -> None:
        if self.enabled:
            try:
                from tqdm import tqdm

                tqdm.write(text, file=sys.stderr)
            except ImportError:
                print(text, file=sys.stderr)

    def start(self, total: int, description: str) -> None:
        if not self.enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=total, desc=description, unit="step", leave=False)

    def update(self) -> None:
        if self._bar is not None:
            self._bar.update()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
