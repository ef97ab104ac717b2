"""``run_bench``: every measurement of ``python -m dsnet_export bench`` in one interleaved run.

Timing is as a user's loop calls the code (``timing.run_blocks``): blocks of back-to-back calls,
interleaved round by round, compared within groups measured next to each other.  Contenders:

* (a) per batch size and gate route k, one group: ``dispatcher/route<k>/b<B>``
  (``Dispatcher.run(x, route=k)``: gate engine + route k engine, default options), ``monolithic``
  (one ONNX model of subnet k with the same weights, in one ONNX Runtime session with the
  dispatcher's session options, as a user would deploy a static model), ``engines`` (the
  dispatcher's own two engine runs, bound once, nothing around them: dispatcher - engines is the
  dispatcher's fixed per-call cost) and
  ``fused`` (gate and routes in one graph with ``If`` nodes, see ``fused``: the one-session
  design, measured against the dispatcher's two sessions);
* (b) per batch size above 1, one group: ``dispatcher/mixed/b<B>`` (per-sample routing of a batch
  that mixes the gate's routes) and the official full-width masking of that batch
  (``masking-torch``, ``masking-torch-official``, ``masking-onnx``);
* (e) the end-to-end question on a labelled data set (``endtoend``): the dynamic network at batch
  1 and 8 against each static route and the oracle mix.

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
from ..graphs.masking import masking_width
from ..optional import optional
from ..runtime import Dispatcher, load_bundle
from ..runtime.backends.ort import OrtOptions
from ..runtime.backends.ort.sessions import SessionFactory
from . import endtoend
from . import memory as memory_module
from .contenders import (
    BundleContext,
    MaskedOnnx,
    Monolithic,
    make_session,
    masked_model,
    monolithic_model,
    write_naive_deployment,
)
from .fused import FusedEngine, fused_model
from .mixed import choose_mixed, synthetic_pool
from .settings import (
    OVERHEAD_GOAL,
    PER_CALL_GOAL_US,
    SCHEMA,
    SCHEMA_VERSION,
    SMALL_MODEL_MS,
    SMALL_MODEL_OVERHEAD_GOAL,
    SPEEDUP_GOAL,
    BenchSettings,
)
from .timing import run_blocks, wait_until_idle

POOL_SIZE = 64
MEMORY_WARMUP = 1  # fresh processes of each kind left out of the memory medians
KINDS = ("dispatcher", "monolithic", "engines", "fused")


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
    settle = (lambda: wait_until_idle(settings.idle_wait)) if settings.idle_wait > 0 else None

    torch_masking, torch_note = _torch_masking(ctx, settings)
    if torch_note:
        notes.append(torch_note)

    groups: list[dict[str, Callable[[], object]]] = []
    overhead, mixed = [], []
    options = OrtOptions(threads=settings.threads, shared_pool=settings.shared_pool)
    with Dispatcher.load(bundle.root, "ort", options, verify=False) as dispatcher, \
            tempfile.TemporaryDirectory(prefix="dsnet-bench-") as tmp, \
            closing(SessionFactory(bundle, ["CPUExecutionProvider"], settings.threads, True,
                                   settings.shared_pool)) as factory:
        bar.status("building the monolithic, fused and masked models")
        pool = settings.shared_pool
        monolithic = {r.index: Monolithic(make_session(monolithic_model(ctx, r), settings.threads, pool))
                      for r in gate_routes}
        fused = FusedEngine(factory.from_model(fused_model(bundle), "fused"), bundle)
        masked = MaskedOnnx(make_session(masked_model(ctx), settings.threads, pool))

        # (a) forced routes against the monolithic models, the bare engines and the fused engine
        for batch in batch_sizes:
            x = rng.standard_normal((batch, *m.input.shape)).astype(np.float32)
            for r in gate_routes:
                names = {kind: f"{kind}/route{r.index}/b{batch}" for kind in KINDS}
                groups.append({names["dispatcher"]: _bind(dispatcher.run, x, route=r.index),
                               names["monolithic"]: _bind(monolithic[r.index], x),
                               names["engines"]: dispatcher.backend.bound_engines(r, x),
                               names["fused"]: _bind(fused, x, r.index)})
                expected = dispatcher.run(x, route=r.index).logits
                diff = max(_max_diff(expected, monolithic[r.index](x)), _max_diff(expected, fused(x, r.index)))
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
            group = {row["dispatcher"]: _bind(_dispatch_with_bias, dispatcher, x, choice.bias),
                     row["masking_onnx"]: _bind(masked, x, choice.bias)}
            if torch_masking is not None:
                group[row["masking_torch"]] = torch_masking.contender(x, choice.bias)
                group[row["masking_torch_official"]] = torch_masking.contender(x, choice.bias, official=True)
            groups.append(group)

        # all of them, interleaved
        bar.start(settings.rounds + 1, "timing rounds")
        timings = run_blocks(groups, settings.rounds, block_seconds=settings.block_seconds,
                             warmup_calls=settings.warmup, settle=settle, on_round=lambda r: bar.update())
        bar.close()

        # (e) the end-to-end question, on labelled data
        e2e = None
        dispatcher.gate_bias = None  # the mixed batches set their own
        if settings.end_to_end:
            e2e, note = _end_to_end(dispatcher, ctx, settings, settle, bar)
            if note:
                notes.append(note)

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

    for row in overhead:
        _overhead_numbers(row, timings)
    for row in mixed:
        row["dispatcher_ms"] = 1e3 * timings.median(row["dispatcher"])
        row["masking_onnx_ms"] = 1e3 * timings.median(row["masking_onnx"])
        row["speedup_onnx"] = timings.ratio(row["masking_onnx"], row["dispatcher"])
        for variant in ("torch", "torch_official"):
            if row[f"masking_{variant}"] is not None:
                row[f"masking_{variant}_ms"] = 1e3 * timings.median(row[f"masking_{variant}"])
                row[f"speedup_{variant}"] = timings.ratio(row[f"masking_{variant}"], row["dispatcher"])
        row["goal"] = SPEEDUP_GOAL
    notes += _standard_notes(ctx, settings, mixed)
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "bundle": _bundle_info(ctx),
        "settings": {"rounds": settings.rounds, "warmup": settings.warmup, "block_s": settings.block_seconds,
                     "batch_sizes": list(batch_sizes), "threads": settings.threads,
                     "shared_pool": settings.shared_pool, "torch": torch_masking is not None,
                     "memory": settings.memory, "memory_runs": settings.memory_runs if settings.memory else 0,
                     "idle_wait_max_s": settings.idle_wait, "data": list(settings.data), "seed": settings.seed,
                     "end_to_end": settings.end_to_end, "labelled": settings.labelled,
                     "e2e_samples": settings.e2e_samples, "e2e_rounds": settings.e2e_rounds},
        "environment": _environment(torch_masking),
        "contenders": {name: timings.summary(name) for group in groups for name in group},
        "round_orders": timings.orders,
        "idle_wait_total_s": timings.idle_wait_s,
        "overhead": overhead,
        "mixed": mixed,
        "efficiency": _efficiency(overhead, gate_routes),
        "end_to_end": e2e,
        "memory": memory,
        "notes": notes,
        "elapsed_s": time.perf_counter() - started,
    }


def _overhead_numbers(row: dict, timings) -> None:
    """Medians and paired ratios of one (a) row; the per-call cost is dispatcher - engines."""
    for kind in KINDS:
        row[f"{kind}_ms"] = 1e3 * timings.median(row[kind])
    row["ratio"] = timings.ratio(row["dispatcher"], row["monolithic"])
    row["ratio_engines"] = timings.ratio(row["engines"], row["monolithic"])
    row["ratio_fused"] = timings.ratio(row["fused"], row["monolithic"])
    row["fused_vs_dispatcher"] = timings.ratio(row["fused"], row["dispatcher"])
    pairs = zip(timings.block_medians(row["dispatcher"]), timings.block_medians(row["engines"]))
    row["per_call_us"] = 1e6 * float(np.median([d - e for d, e in pairs]))
    row["per_call_goal_us"] = PER_CALL_GOAL_US
    row["goal"] = SMALL_MODEL_OVERHEAD_GOAL if row["monolithic_ms"] < SMALL_MODEL_MS else OVERHEAD_GOAL


def _end_to_end(dispatcher, ctx: BundleContext, settings: BenchSettings, settle, bar) -> tuple[dict | None, str]:
    """The end-to-end section, or None and the reason it was skipped."""
    try:
        data = endtoend.load_labelled(settings.labelled, ctx.bundle.manifest, limit=settings.e2e_samples)
    except DsnetError as exc:
        return None, f"end-to-end section skipped: {exc}"
    bar.start(settings.e2e_rounds + 1, f"end to end on {data.name} ({len(data.labels)} samples)")
    section = endtoend.run_end_to_end(dispatcher, ctx, data, rounds=settings.e2e_rounds, threads=settings.threads,
                                      settle=settle, on_round=lambda r: bar.update())
    bar.close()
    return section, ""


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
            raise DsnetError("data=: no samples found")
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

        from ..export.from_bundle import supernet_from_bundle
        from .masking_torch import TorchMasking

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
        return out.logits.numpy(), out.gate_index.tolist()

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
    notes.append("overhead: dispatcher and monolithic are compared in blocks measured next to each other; "
                 "ratio = median over rounds of the two block medians' ratio; engines = the dispatcher's own two "
                 "engine runs with nothing around them, so dispatcher - engines is its fixed per-call cost; "
                 "fused = gate and routes in one ONNX graph with If nodes (bench/fused.py), the one-session design")
    if settings.idle_wait > 0:
        notes.append(f"before every block (not every call) the bench waits, up to {settings.idle_wait * 1e3:.0f} ms, "
                     f"until the process is idle: the previous contender's worker threads may still spin; within "
                     f"a block calls run back to back, as a user's loop makes them")
    return notes


class _Progress:
    """tqdm when installed and wanted, otherwise silent."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = None

    def status(self, text: str) -> None:
        if self.enabled:
            tqdm = optional("tqdm")
            if tqdm is not None:
                tqdm.tqdm.write(text, file=sys.stderr)
            else:
                print(text, file=sys.stderr)

    def start(self, total: int, description: str) -> None:
        if not self.enabled:
            return
        tqdm = optional("tqdm")
        if tqdm is not None:
            self._bar = tqdm.tqdm(total=total, desc=description, unit="step", leave=False)

    def update(self) -> None:
        if self._bar is not None:
            self._bar.update()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
