"""The bench report: printed tables, the JSON file (every raw number and the medians), the PNG.

The report is a plain JSON-ready dict made by ``run_bench``; its schema (the keys and types a reader may rely on)
is the ``Report`` record below, which ``check_report`` parses it as (with ``records.parse_record``, the parser of
the manifest and budget files) and which the tests hold it to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ..errors import DsnetError
from ..files import write_json_atomic
from ..optional import require
from ..records import open_record, parse_record
from ..tables import format_table
from .settings import SCHEMA, SCHEMA_VERSION


class ReportError(DsnetError, ValueError):
    """A bench report that breaks its schema; names the field path (``report.overhead[3].ratio: ...``)."""


# The schema, declared once and parsed by ``records.parse_record``.  Every record is open: the bench may add
# fields (the memory runs' anonymous/file-backed RSS, ...) that readers do not rely on; the declared ones are
# required (``X | None`` ones may be null) and typed.  Plain ``dict``/``list`` of ``Any`` are free-form sections.
@open_record
@dataclass(frozen=True)
class _Header:
    schema: str
    version: int


@open_record
@dataclass(frozen=True)
class ReportSettings:
    memory_runs: int | None = None  # measured processes per deployment; needed with a memory section


@open_record
@dataclass(frozen=True)
class Contender:
    seconds: list[Any]  # rounds * calls samples
    median_s: float
    p25_s: float
    p75_s: float
    min_s: float
    rounds: int
    calls: int


@open_record
@dataclass(frozen=True)
class OverheadRow:
    batch: int
    route: int
    name: str
    macs: int
    dispatcher: str  # contender names
    monolithic: str
    engines: str
    fused: str
    dispatcher_ms: float
    monolithic_ms: float
    engines_ms: float
    fused_ms: float
    ratio: float
    ratio_engines: float
    ratio_fused: float
    fused_vs_dispatcher: float
    per_call_us: float
    per_call_goal_us: float
    goal: float
    max_abs_diff: float


@open_record
@dataclass(frozen=True)
class MixedRow:
    batch: int
    source: str
    biased: bool
    gate_bias: list[Any]
    routes: list[Any]
    histogram: list[Any]
    avg_macs: float
    masking_macs: int
    masking_width: str
    dispatcher: str
    masking_onnx: str
    masking_torch: str | None  # None: PyTorch masking skipped
    dispatcher_ms: float
    masking_onnx_ms: float
    masking_torch_ms: float | None
    speedup_onnx: float
    speedup_torch: float | None
    goal: float
    max_abs_diff_onnx: float
    max_abs_diff_torch: float | None
    max_abs_logit: float
    macs_ratio: float
    masking_torch_official: str | None
    masking_torch_official_ms: float | None
    speedup_torch_official: float | None
    max_abs_diff_torch_official: float | None


@open_record
@dataclass(frozen=True)
class EfficiencyRow:
    batch: int
    engine: str
    narrow_route: str
    wide_route: str
    narrow_macs: int
    wide_macs: int
    narrow_ms: float
    wide_ms: float
    realised: float
    theoretical: float
    fraction: float | None
    ms_per_gmacs: list[Any]


@open_record
@dataclass(frozen=True)
class MemoryRun:
    kind: str
    route: int
    import_s: float
    load_s: float
    first_call_s: float
    cold_start_s: float
    interpreter_rss: int
    baseline_rss: int
    load_rss: int
    first_call_rss: int
    warmup: bool


@open_record
@dataclass(frozen=True)
class MemorySection:
    runs: dict[str, list[MemoryRun]]  # deployment kind -> its processes, warm-up ones included
    median: dict[str, Any]
    ratio: dict[str, Any]
    naive_files: int
    naive_bytes: int
    bundle_bytes: int


@open_record
@dataclass(frozen=True)
class Report:
    schema: str
    version: int
    bundle: dict[str, Any]
    settings: ReportSettings
    environment: dict[str, Any]
    contenders: dict[str, Contender]
    round_orders: list[Any]
    idle_wait_total_s: float
    overhead: list[OverheadRow]
    mixed: list[MixedRow]
    efficiency: list[EfficiencyRow]
    end_to_end: dict[str, Any] | None
    memory: MemorySection | None
    notes: list[Any]
    elapsed_s: float


def check_report(data: dict) -> None:
    """Raise ``ReportError`` (a ``ValueError``) naming the field path of the first field whose presence, type or
    consistency breaks the schema."""
    def fail(path: str, message: str) -> NoReturn:
        raise ReportError(f"report.{path}: {message}")

    header = parse_record(_Header, data, "", "report", error=ReportError)
    if header.schema != SCHEMA:
        fail("schema", f"unknown schema {header.schema!r:.60} (this dsnet-export reads {SCHEMA!r})")
    if header.version != SCHEMA_VERSION:
        fail("version", f"unsupported version {header.version!r} (this dsnet-export reads version {SCHEMA_VERSION})")
    report: Report = parse_record(Report, data, "", "report", error=ReportError)
    for name, entry in report.contenders.items():
        if len(entry.seconds) != entry.rounds * entry.calls:
            fail(f"contenders[{name!r}].seconds", f"{len(entry.seconds)} samples for {entry.rounds} rounds of "
                                                   f"{entry.calls} calls")
    for i, row in enumerate(report.overhead):
        for key in ("dispatcher", "monolithic", "engines", "fused"):
            if getattr(row, key) not in report.contenders:
                fail(f"overhead[{i}].{key}", f"{getattr(row, key)!r} is not a contender")
    if report.memory is not None:
        expected = report.settings.memory_runs
        if expected is None:
            fail("settings.memory_runs", "missing or null (the memory section needs the number of measured runs)")
        for kind, runs in report.memory.runs.items():
            if sum(not run.warmup for run in runs) != expected:
                fail(f"memory.runs[{kind!r}]", f"not {expected} measured runs")


# -- text ---------------------------------------------------------------------------------
def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f} ms"


def _x(v, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}x"


def _mb(v) -> str:
    return "-" if v is None else f"{v / 1e6:.1f} MB"


def _rel(diff, scale) -> str:
    return "-" if diff is None else f"{diff / max(scale, 1e-30):.1e}"


def _goal(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def versus_widest(data: dict) -> list[dict]:
    """Per batch size: the dynamic network on an even mix of the gate's routes vs the widest gate route as one
    static monolithic network, from the sections' own medians (nothing timed here)."""
    rows = []
    gate_routes = len(data["bundle"]["gate_routes"])
    for batch in sorted({r["batch"] for r in data["overhead"]}):
        routes = sorted((r for r in data["overhead"] if r["batch"] == batch and r["route"] < gate_routes),
                        key=lambda r: r["route"])
        if len(routes) != gate_routes:
            continue
        widest = routes[-1]
        mixed = next((m for m in data["mixed"] if m["batch"] == batch), None)
        if batch == 1:
            avg_macs = sum(r["macs"] for r in routes) / len(routes)
            dynamic, how = sum(r["dispatcher_ms"] for r in routes) / len(routes), "mean over routes (a)"
        elif mixed is not None:
            avg_macs, dynamic, how = mixed["avg_macs"], mixed["dispatcher_ms"], "mixed batch (b)"
        else:
            continue
        rows.append({"batch": batch, "how": how, "avg_macs": avg_macs, "macs_ratio": widest["macs"] / avg_macs,
                     "dynamic_ms": dynamic, "widest_ms": widest["monolithic_ms"],
                     "speedup": widest["monolithic_ms"] / dynamic})
    return rows


def format_report(data: dict) -> str:
    b, s, env = data["bundle"], data["settings"], data["environment"]
    threads = f"{s['threads']} threads" if s["threads"] else "default threads"
    threads += ", one shared thread pool" if s.get("shared_pool") else ", a thread pool per session"
    lines = [f"dsnet-export bench: {b['path']} ({b['arch']}, {len(b['gate_routes'])} gate routes, input "
             f"{'x'.join(map(str, b['input_shape']))}); onnxruntime {env['onnxruntime']} CPU, {env['cpus']} CPUs, "
             f"{threads}; {s['rounds']} interleaved rounds of back-to-back blocks ({s['warmup']} untimed calls "
             f"each), medians", ""]

    lines.append("(a) overhead: gate + route k through the dispatcher vs one monolithic ONNX of subnet k "
                 "(same weights, a plain ONNX Runtime session)")
    lines.append(format_table(
        ["batch", "route", "MAdds", "dispatcher", "monolithic", "ratio", "goal", "met", "per call", "engines",
         "fused", "fused/dispatcher", "max|diff|"],
        [[r["batch"], f"{r['route']} {r['name']}", f"{r['macs'] / 1e6:.2f}M", _ms(r["dispatcher_ms"]),
          _ms(r["monolithic_ms"]), f"{r['ratio']:.3f}", f"<= {r['goal']:g}", _goal(r["ratio"] <= r["goal"]),
          f"{r['per_call_us']:+.0f} us", f"{r['ratio_engines']:.3f}", f"{r['ratio_fused']:.3f}",
          f"{r['fused_vs_dispatcher']:.3f}", f"{r['max_abs_diff']:.1e}"]
         for r in data["overhead"]]))
    if data["overhead"]:
        goal = data["overhead"][0]["per_call_goal_us"]
        lines.append(f"    ratio: dispatcher / monolithic (median of per-round ratios); per call: dispatcher - its own "
                     f"two engine runs bound once (the dispatcher's fixed cost, goal <= {goal:g} us); engines, "
                     f"fused: their time / monolithic")
    lines.append("")

    if data["mixed"]:
        goal = data["mixed"][0]["goal"]
        lines.append(f"(b) mixed batch, per-sample routing vs masking (full width {data['mixed'][0]['masking_width']}, "
                     f"{data['mixed'][0]['masking_macs'] / 1e6:.2f}M MAdds/sample; goal >= {goal:g}x vs PyTorch)")
        variants = (("torch", "masking torch"), ("torch_official", "masking torch official ops"),
                    ("onnx", "masking onnx"))
        rows = []
        for r in data["mixed"]:
            rows.append([r["batch"], ",".join(map(str, r["routes"])), f"{r['avg_macs'] / 1e6:.2f}M",
                         _x(r["macs_ratio"]), "dispatcher", _ms(r["dispatcher_ms"]), "-", "-"])
            for key, label in variants:
                rows.append(["", "", "", "", label, _ms(r[f"masking_{key}_ms"]), _x(r[f"speedup_{key}"]),
                             _rel(r[f"max_abs_diff_{key}"], r["max_abs_logit"])])
            rows.append(["", "", "", "", f"goal >= {r['goal']:g}x vs masking torch met",
                         _goal(None if r["speedup_torch"] is None else r["speedup_torch"] >= r["goal"]), "", ""])
        lines.append(format_table(["batch", "routes", "avg MAdds", "MAdds ratio", "contender", "latency",
                                   "speed-up", "rel. |diff|"], rows))
        lines.append("    speed-up: masking latency / dispatcher latency; MAdds ratio: masking's MAdds over the mixed "
                     "batch's average; rel. |diff|: max |masking - dispatcher logits| / max |logit|")
        lines.append("")

    versus = versus_widest(data)
    if versus:
        lines.append("(b2) the dynamic network vs the static widest route (the network it replaces), the gate's routes "
                     "taken evenly")
        lines.append(format_table(
            ["batch", "how", "avg MAdds", "MAdds ratio", "dynamic", "widest, monolithic", "speed-up",
             "speed-up / MAdds ratio"],
            [[r["batch"], r["how"], f"{r['avg_macs'] / 1e6:.2f}M", _x(r["macs_ratio"]), _ms(r["dynamic_ms"]),
              _ms(r["widest_ms"]), _x(r["speedup"]), f"{r['speedup'] / r['macs_ratio']:.3f}"] for r in versus]))
        lines.append("    batch 1: each call one sample on one route, so the mix's latency is the mean of (a)'s "
                     "dispatcher latencies over the gate's routes; larger batches: (b)'s mixed batch")
        lines.append("")

    if data["efficiency"]:
        e0 = data["efficiency"][0]
        lines.append(f"(c) route efficiency: {e0['narrow_route']} -> {e0['wide_route']} "
                     f"(MAdds {e0['narrow_macs'] / 1e6:.2f}M -> {e0['wide_macs'] / 1e6:.2f}M)")
        lines.append(format_table(
            ["batch", "engine", "narrowest", "widest", "realised", "theoretical", "realised/theoretical",
             "ms per GMAdds (routes)"],
            [[r["batch"], r["engine"], _ms(r["narrow_ms"]), _ms(r["wide_ms"]), _x(r["realised"], 3),
              _x(r["theoretical"], 3), f"{r['realised'] / r['theoretical']:.3f}",
              " ".join(f"{v:.1f}" for v in r["ms_per_gmacs"])]
             for r in data["efficiency"]]))
        lines.append("")

    if data["end_to_end"] is not None:
        from .endtoend import format_end_to_end

        lines.append("(e) end to end: is the dynamic network faster than the static one you could deploy instead?")
        lines += format_end_to_end(data["end_to_end"])
        lines.append("")

    mem = data["memory"]
    if mem is None:
        lines.append("(d) memory and cold start: skipped (--skip-memory)")
    else:
        d, n, ratio = mem["median"]["dispatcher"], mem["median"]["naive"], mem["ratio"]
        warm = sum(run["warmup"] for run in mem["runs"]["dispatcher"])
        lines.append(f"(d) memory and cold start, medians of {s['memory_runs']} fresh processes each (after {warm} "
                     f"warm-up process{'es' if warm != 1 else ''} each, left out); RSS minus the "
                     f"interpreter+onnxruntime baseline ({_mb(d['baseline_rss'])})")
        rows = []
        for label, v in (("dispatcher (bundle)", d), (f"naive ({mem['naive_files']} standalone ONNX)", n)):
            rows.append([label, _mb(v["load_rss"]), _mb(v["first_call_rss"]), _mb(v["first_call_anon"]),
                         _ms(1e3 * v["load_s"]), _ms(1e3 * v["first_call_s"]), _ms(1e3 * v["cold_start_s"])])
        rows.append(["dispatcher / naive", _x(ratio["load_rss"], 3), _x(ratio["first_call_rss"], 3),
                     _x(ratio["first_call_anon"], 3), _x(ratio["load_s"], 3), _x(ratio["first_call_s"], 3),
                     _x(ratio["cold_start_s"], 3)])
        lines.append(format_table(["deployment", "RSS after load", "RSS after 1st call", "of it anonymous",
                                   "load", "first call", "cold start"], rows))
        lines.append("    anonymous: private memory; the rest is file-backed pages (the dispatcher maps "
                     "weights.safetensors: page cache, shared with other processes mapping it)")
        lines.append("    cold start: load + first call (batch 1) in a fresh process; the files are in the OS "
                     "page cache (not a cold disk)")
        lines.append(f"files: bundle {_mb(mem['bundle_bytes'])} vs naive {_mb(mem['naive_bytes'])}; the dispatcher's "
                     f"sha256 check (not in its load time above) takes {_ms(1e3 * d['hash_check_s'])}")
    lines.append("")
    lines += [f"note: {n}" for n in data["notes"]]
    lines.append(f"bench took {data['elapsed_s']:.0f} s")
    return "\n".join(lines)


def write_json(data: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, data)


def write_png(data: dict, path: str | os.PathLike) -> Path:
    """Latency vs MAdds per batch size: route points of dispatcher and monolithic, the mixed batch,
    masking, and the line of latency proportional to MAdds through the narrowest dispatcher route;
    and, with the end-to-end section, accuracy vs measured latency."""
    matplotlib = require("matplotlib", "the latency-vs-MAdds plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    batches = list(dict.fromkeys(r["batch"] for r in data["overhead"]))
    e2e = data.get("end_to_end")
    panels = len(batches) + (e2e is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2), squeeze=False)
    if e2e is not None:
        from .endtoend import plot_end_to_end

        plot_end_to_end(e2e, axes[0][-1])
    for ax, batch in zip(axes[0], batches):
        rows = sorted((r for r in data["overhead"] if r["batch"] == batch), key=lambda r: r["macs"])
        macs = [r["macs"] / 1e6 for r in rows]
        ax.plot(macs, [r["dispatcher_ms"] for r in rows], "o-", label="dispatcher (gate + route k; k marked)")
        ax.plot(macs, [r["monolithic_ms"] for r in rows], "s--", label="monolithic subnet k")
        ax.plot(macs, [r["engines_ms"] for r in rows], "x:", color="tab:green", alpha=0.7,
                label="the dispatcher's two engine runs alone")
        ax.plot(macs, [r["fused_ms"] for r in rows], "d:", color="tab:purple", alpha=0.7,
                label="fused engine (gate + If routes, one session)")
        for r in rows:  # the route index only: route points can sit a few pixels apart
            ax.annotate(str(r["route"]), (r["macs"] / 1e6, r["dispatcher_ms"]), textcoords="offset points",
                        xytext=(-3, 6), fontsize=7)
        if rows:
            k = rows[0]["dispatcher_ms"] / macs[0]
            top = max(macs + [m["masking_macs"] / 1e6 for m in data["mixed"] if m["batch"] == batch])
            ax.plot([0, top], [0, k * top], ":", color="grey", label="proportional to MAdds")
        for m in (m for m in data["mixed"] if m["batch"] == batch):
            ax.plot([m["avg_macs"] / 1e6], [m["dispatcher_ms"]], "*", markersize=14,
                    label=f"dispatcher, mixed batch (routes {','.join(map(str, m['routes']))})")
            if m["masking_torch_ms"] is not None:
                ax.plot([m["masking_macs"] / 1e6], [m["masking_torch_ms"]], "^", markersize=9,
                        label="masking, PyTorch (lean)")
                ax.plot([m["masking_macs"] / 1e6], [m["masking_torch_official_ms"]], "<", markersize=9,
                        label="masking, PyTorch (official ops)")
            ax.plot([m["masking_macs"] / 1e6], [m["masking_onnx_ms"]], "v", markersize=9, label="masking, ONNX")
        ax.set_title(f"batch {batch}")
        ax.set_xlabel("MAdds per sample (M)")
        ax.set_ylabel("median latency per batch (ms)")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{data['bundle']['name']} ({data['bundle']['arch']}): latency vs MAdds", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
