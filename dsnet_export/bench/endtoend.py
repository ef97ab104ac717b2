"""End to end on labelled data: is the dynamic network faster than the static one a user could deploy?

Every contender classifies the same samples, called as a user's loop calls it:

* ``dynamic b1``: ``dispatcher(x[i:i+1])`` per sample (the gate picks each sample's route);
* ``dynamic b8``: ``dispatcher(x[i:i+8])`` over consecutive batches of 8 (the last may be smaller);
* ``static <route>``: one monolithic ONNX model of a gate route, in one ONNX Runtime session (the
  dispatcher's session options), ``session.run`` per sample: the static network the user could deploy instead;
* ``oracle mix``: per sample, the static model of the route the gate picked, so the cost of a
  dispatcher with zero overhead.

Timing: each round is one pass over the data by every contender, interleaved chunk by chunk: for
each chunk of 32 samples every contender makes its calls on it back to back (no idle waits between
calls), in an order rotated by one place per chunk.  A sample's latency is the median over rounds of
its call's time (for batches of 8, the batch's time over its size).  Accuracy and routes come from
one untimed warm-up pass per contender.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DsnetError
from ..imaging import Preprocessing
from ..runtime.manifest import Manifest, RouteInfo
from .contenders import BundleContext, Monolithic, make_session, monolithic_model
from .timing import median, percentile, rotation, time_calls

DYNAMIC_B1 = "dynamic b1"
DYNAMIC_B8 = "dynamic b8"
ORACLE_MIX = "oracle mix"
BATCH = 8
CHUNK = 4 * BATCH       # samples per interleaving step (a multiple of BATCH: batches never straddle chunks)
ORACLE_ATOL = 1e-4      # oracle mix vs dynamic b1 logits: the same engines' arithmetic, one graph or two
SHUFFLE_SEED = 0        # the fixed shuffle before ``limit`` keeps a prefix


@dataclass(frozen=True, eq=False)
class LabelledData:
    """Samples preprocessed for a bundle, with their labels."""

    name: str
    images: np.ndarray   # [N, C, H, W] float32, as the bundle's input spec wants them
    labels: np.ndarray   # [N] int64, the bundle's output index of each sample's class
    classes: list[str]   # the bundle's class names (or indices), in output order


# -- data ---------------------------------------------------------------------------------
def load_labelled(source: str | os.PathLike, manifest: Manifest, limit: int | None = None) -> LabelledData:
    """``digits`` (scikit-learn's digits, test split) or a folder ``root/<class>/<image>``, preprocessed
    for ``manifest``; ``limit`` keeps the first samples after a fixed shuffle.  A data set that does
    not fit the bundle (class count, image shape) raises ``DsnetError`` before any image is read."""
    if limit is not None and limit < 1:
        raise DsnetError(f"limit must be at least 1, got {limit}")
    return _shuffled_prefix(_load(str(source), manifest), limit)


def _load(source: str, manifest: Manifest) -> LabelledData:
    """The digits test split or a whole folder, decoded and preprocessed as the manifest says, with
    classes matched to the bundle's (by name when it records names)."""
    from ..datasets import load_dataset, match_classes

    if source != "digits":
        if not Path(source).exists():
            raise DsnetError(f"{source}: no such folder (expected 'digits' or a folder of class sub-folders)")
        if not Path(source).is_dir():
            raise DsnetError(f"{source}: not a folder (expected 'digits' or a folder of class sub-folders)")
    dataset = load_dataset(source, Preprocessing.from_manifest(manifest.input), split_seed=manifest.split_seed or 0)
    mapping = match_classes(dataset.classes, manifest.labels, int(manifest.arch["num_classes"]), data=str(source),
                            model="the bundle")
    split = dataset.default_split
    if len(dataset.labels(split)) == 0:
        raise DsnetError(f"{source}: no images in its class folders")
    batches = list(dataset.batches(split, 256))
    name = "digits (test split)" if source == "digits" else (Path(source).name or str(source))
    data = LabelledData(name, np.concatenate([x for x, _ in batches]), mapping[np.concatenate([y for _, y in batches])],
                        list(manifest.labels) or [str(k) for k in range(int(manifest.arch["num_classes"]))])
    _check_fits(data, manifest)
    return data


def _check_fits(data: LabelledData, manifest: Manifest) -> None:
    """The data set's image shape is the bundle's."""
    shape = list(data.images.shape[1:])
    if data.images.ndim != 4 or shape != list(manifest.input.shape):
        raise DsnetError(f"{data.name}: images of shape {shape}, but the bundle takes {list(manifest.input.shape)}")
    if len(data.labels) != len(data.images) or len(data.labels) == 0:
        raise DsnetError(f"{data.name}: {len(data.images)} images for {len(data.labels)} labels")


def _shuffled_prefix(data: LabelledData, limit: int | None) -> LabelledData:
    """A fixed shuffle, so any ``limit`` is a prefix of the whole set (and mixes the classes)."""
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(data.labels))[:limit]
    images = np.ascontiguousarray(data.images[order], dtype=np.float32)
    return LabelledData(data.name, images, data.labels[order], data.classes)


# -- contenders ---------------------------------------------------------------------------
Call = tuple[Callable[[np.ndarray], object], np.ndarray]


@dataclass
class _Contender:
    name: str
    kind: str                # "dynamic", "static" or "oracle"
    calls: list[Call]        # (function, input) in data order
    route: RouteInfo | None = None

    @property
    def sizes(self) -> list[int]:
        return [len(x) for _, x in self.calls]


def _single(x: np.ndarray) -> list[np.ndarray]:
    return [x[i:i + 1] for i in range(len(x))]


def _batches(x: np.ndarray, size: int) -> list[np.ndarray]:
    return [x[i:i + size] for i in range(0, len(x), size)]


def _static_models(ctx: BundleContext, routes: Sequence[RouteInfo], threads: int | None) -> dict[int, Monolithic]:
    """One ONNX Runtime session per gate route, as a static model is deployed (the dispatcher's session options,
    ``contenders.make_session``)."""
    return {r.index: Monolithic(make_session(monolithic_model(ctx, r), threads)) for r in routes}


# -- passes -------------------------------------------------------------------------------
def _warm_up(contender: _Contender, settle: Callable[[], object] | None) -> dict[str, np.ndarray]:
    """The untimed first pass; its outputs give the accuracy (and, for the dispatcher, the routes)."""
    if settle is not None:
        settle()
    results = [fn(x) for fn, x in contender.calls]
    if contender.kind == "dynamic":
        return {field: np.concatenate([getattr(r, field) for r in results]) for field in ("logits", "routes", "macs")}
    return {"logits": np.concatenate(results)}


def _run_rounds(contenders: list[_Contender], rounds: int, settle, on_round,
                clock: Callable[[], float]) -> tuple[dict[str, list[list[float]]], list[list[str]]]:
    """``rounds`` passes over the data, interleaved chunk by chunk: for each chunk of ``CHUNK`` samples
    every contender runs its calls on that chunk back to back, in an order rotated by one place per
    chunk, so all of them meet the machine in the same state (a noisy neighbour's bursts last longer
    than a chunk).  Per contender and round: seconds per call, in data order."""
    seconds: dict[str, list[list[float]]] = {c.name: [] for c in contenders}
    orders = []
    chunks = {c.name: _chunks(c.sizes) for c in contenders}
    n_chunks = len(next(iter(chunks.values())))
    step = 0
    for r in range(rounds):
        times: dict[str, list[float]] = {c.name: [] for c in contenders}
        orders.append([c.name for c in rotation(contenders, step)])  # the round's first chunk
        for k in range(n_chunks):
            order = rotation(contenders, step)
            step += 1
            for contender in order:
                if settle is not None:
                    settle()
                start, stop = chunks[contender.name][k]
                times[contender.name] += time_calls([(fn, (x,)) for fn, x in contender.calls[start:stop]], clock)
        for name, values in times.items():
            seconds[name].append(values)
        if on_round is not None:
            on_round(r)
    return seconds, orders


def _chunks(sizes: list[int]) -> list[tuple[int, int]]:
    """Call ranges [start, stop) covering ``CHUNK`` samples each (batches of ``BATCH`` divide it)."""
    ranges, start, samples = [], 0, 0
    for i, size in enumerate(sizes):
        samples += size
        if samples % CHUNK == 0 or i == len(sizes) - 1:
            ranges.append((start, i + 1))
            start = i + 1
    return ranges


# -- the section --------------------------------------------------------------------------
def run_end_to_end(dispatcher, ctx: BundleContext, data: LabelledData, *, rounds: int, threads: int | None = None,
                   settle: Callable[[], object] | None = None, on_round: Callable[[int], object] | None = None,
                   clock: Callable[[], float] = time.perf_counter) -> dict:
    """Time and score every contender on ``data``; returns the JSON-ready section.

    ``dispatcher`` runs with the options it has (pass one with its defaults: a gate bias left by
    another measurement changes the routes; the section records bias and policy).  ``threads``
    sets the static sessions' intra-op threads (None: ONNX Runtime's default).  ``settle()`` runs,
    untimed, before every pass; ``on_round(r)`` after each timed round r = 0 .. rounds-1.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    m = ctx.bundle.manifest
    _check_fits(data, m)
    x = np.ascontiguousarray(data.images, dtype=np.float32)
    gate_routes = [m.routes[k] for k in m.gate.routes]
    static = _static_models(ctx, gate_routes, threads)

    b1 = _Contender(DYNAMIC_B1, "dynamic", [(dispatcher, s) for s in _single(x)])
    b8 = _Contender(DYNAMIC_B8, "dynamic", [(dispatcher, b) for b in _batches(x, BATCH)])
    statics = [_Contender(f"static {r.name}", "static", [(static[r.index], s) for s in _single(x)], r)
               for r in gate_routes]
    outputs = {b1.name: _warm_up(b1, settle)}
    chosen = outputs[b1.name]["routes"]  # the gate's choice per sample, which the oracle replays
    oracle = _Contender(ORACLE_MIX, "oracle", [(static[int(k)], s) for k, s in zip(chosen, _single(x))])
    contenders = [b1, b8, *statics, oracle]
    outputs.update({c.name: _warm_up(c, settle) for c in contenders[1:]})
    outputs[ORACLE_MIX].update(routes=chosen, macs=outputs[DYNAMIC_B1]["macs"])
    oracle_diff = _oracle_difference(outputs)
    seconds, orders = _run_rounds(contenders, rounds, settle, on_round, clock)

    gate_names = [r.name for r in gate_routes]
    rows = {c.name: _contender_row(c, outputs[c.name], seconds[c.name], data.labels, m, gate_names)
            for c in contenders}
    widest = max(gate_routes, key=lambda r: r.macs)
    return {
        "data": {"name": data.name, "samples": int(len(data.labels)), "classes": list(data.classes)},
        "rounds": rounds,
        "threads": threads,
        "batch": BATCH,
        "dispatcher": {"policy": dispatcher.policy.value,
                       "gate_bias": [float(b) for b in dispatcher.gate_bias]},
        "contenders": rows,
        "round_orders": orders,
        "headline": _headline(rows, f"static {widest.name}", oracle_diff,
                              bool(np.array_equal(outputs[DYNAMIC_B8]["routes"], chosen))),
    }


def _oracle_difference(outputs: dict[str, dict]) -> float:
    """Max |oracle mix - dynamic b1| logit: the same routes' arithmetic, so more than ``ORACLE_ATOL`` is a bug."""
    diff = float(np.max(np.abs(outputs[ORACLE_MIX]["logits"] - outputs[DYNAMIC_B1]["logits"])))
    if diff > ORACLE_ATOL:
        raise AssertionError(f"oracle mix logits differ from dynamic b1 by {diff:.2e} (> {ORACLE_ATOL:g})")
    return diff


def _contender_row(contender: _Contender, outputs: dict, seconds: list[list[float]], labels: np.ndarray,
                   m: Manifest, gate_names: list[str]) -> dict:
    """Accuracy, MAdds and latency of one contender (JSON-ready)."""
    sizes = contender.sizes
    call_s = [median(per_round) for per_round in zip(*seconds)]  # per call, median over rounds
    sample_s = np.repeat(np.array(call_s) / np.array(sizes), sizes)  # a batch's samples share its time
    routes = outputs.get("routes")
    avg_macs = float(contender.route.macs) if routes is None else float(np.mean(outputs["macs"]))
    return {
        "kind": contender.kind,
        "route": contender.route.name if contender.route is not None else None,
        "batch": max(sizes),
        "accuracy": float(np.mean(outputs["logits"].argmax(1) == labels)),
        "avg_macs": avg_macs,
        "mean_ms": 1e3 * float(sample_s.mean()),
        "p50_call_ms": 1e3 * percentile(call_s, 50),
        "p95_call_ms": 1e3 * percentile(call_s, 95),
        "histogram": None if routes is None else _histogram(routes, m, gate_names),
        "routes": None if routes is None else [int(k) for k in routes],
        "call_sizes": sizes,
        "seconds": [[float(s) for s in per_round] for per_round in seconds],
    }


def _histogram(routes: np.ndarray, m: Manifest, gate_names: list[str]) -> dict[str, int]:
    counts = np.bincount(np.asarray(routes, np.int64), minlength=len(m.routes))
    return {name: int(counts[k]) for name, k in zip(gate_names, m.gate.routes)}


def _headline(rows: dict[str, dict], widest: str, oracle_diff: float, b8_routes_agree: bool) -> dict:
    """The answers: dispatcher overhead over a free dispatch, and dynamic vs the widest static route."""
    dynamic, oracle, static = rows[DYNAMIC_B1], rows[ORACLE_MIX], rows[widest]
    latency_ratio = dynamic["mean_ms"] / static["mean_ms"]
    macs_ratio = dynamic["avg_macs"] / static["avg_macs"]
    macs_saving = 1 - macs_ratio
    return {
        "widest_static": widest,
        "dynamic_b1_vs_oracle_mix": dynamic["mean_ms"] / oracle["mean_ms"],
        "dynamic_b1_vs_widest_static": latency_ratio,
        "macs_ratio": macs_ratio,
        "realised_saving_fraction": (1 - latency_ratio) / macs_saving if macs_saving > 0 else None,
        "dynamic_accuracy_at_least_widest": bool(dynamic["accuracy"] >= static["accuracy"]),
        "oracle_max_abs_diff": oracle_diff,
        "oracle_atol": ORACLE_ATOL,
        "b8_routes_agree": b8_routes_agree,
    }


# -- text and plot ------------------------------------------------------------------------
def format_end_to_end(section: dict) -> list[str]:
    """The section as report lines: a table per contender, then the headline ratios."""
    from ..tables import format_table

    data, rows, h = section["data"], section["contenders"], section["headline"]
    lines = [f"end to end on {data['name']}: {data['samples']} samples, {section['rounds']} passes per contender, "
             f"interleaved {CHUNK} samples at a time (calls back to back), latency per sample = median over passes"]
    lines.append(format_table(
        ["contender", "accuracy", "avg MAdds", "mean latency/sample", "p50 per call", "p95 per call"],
        [[name, f"{r['accuracy']:.2%}", f"{r['avg_macs'] / 1e6:.2f}M", _ms(r["mean_ms"]), _ms(r["p50_call_ms"]),
          _ms(r["p95_call_ms"])] for name, r in rows.items()]))
    dynamic, widest = rows[DYNAMIC_B1], rows[h["widest_static"]]
    fraction = h["realised_saving_fraction"]
    lines.append(f"    dynamic b1 / oracle mix: {h['dynamic_b1_vs_oracle_mix']:.3f}x mean latency (the dispatcher's "
                 f"cost over a zero-overhead dispatch of the same routes)")
    lines.append(f"    dynamic b1 / {h['widest_static']} (widest): {h['dynamic_b1_vs_widest_static']:.3f}x mean "
                 f"latency for {h['macs_ratio']:.3f}x the MAdds; realised "
                 f"{'-' if fraction is None else f'{fraction:.0%}'} of the MAdds saving")
    lines.append(f"    dynamic accuracy {dynamic['accuracy']:.2%} vs {h['widest_static']} {widest['accuracy']:.2%}: "
                 f"at least as accurate: {'yes' if h['dynamic_accuracy_at_least_widest'] else 'NO'}")
    if dynamic["histogram"]:
        lines.append("    route histogram (dynamic b1): "
                     + ", ".join(f"{name} {n}" for name, n in dynamic["histogram"].items()))
    agree = "equal" if h["b8_routes_agree"] else "DIFFER from"
    lines.append(f"    oracle mix logits equal dynamic b1 logits within {h['oracle_atol']:g} (max |diff| "
                 f"{h['oracle_max_abs_diff']:.1e}); dynamic b8 routes {agree} dynamic b1's; "
                 f"b8 per call = per batch of {section['batch']}")
    return lines


def _ms(v: float) -> str:
    return f"{v:.3f} ms"


def plot_end_to_end(section: dict, ax) -> None:
    """Accuracy against measured mean latency per sample: static routes as a line, dynamic and oracle as points."""
    rows = section["contenders"]
    static = sorted((r for r in rows.values() if r["kind"] == "static"), key=lambda r: r["avg_macs"])
    ax.plot([r["mean_ms"] for r in static], [100 * r["accuracy"] for r in static], "o-", color="tab:blue",
            label="static routes (one ONNX model each)")
    for r in static:
        ax.annotate(r["route"], (r["mean_ms"], 100 * r["accuracy"]), textcoords="offset points", xytext=(4, -10),
                    fontsize=8)
    for name, marker, color in ((DYNAMIC_B1, "*", "tab:red"), (DYNAMIC_B8, "P", "tab:orange"),
                                (ORACLE_MIX, "D", "tab:green")):
        r = rows[name]
        ax.plot([r["mean_ms"]], [100 * r["accuracy"]], marker, markersize=12 if marker == "*" else 8, color=color,
                linestyle="none", label=name)
    ax.set_xlabel("measured mean latency per sample (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("accuracy vs measured latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
