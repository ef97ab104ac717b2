"""``python -m dsnet_export bench`` end to end on the tiny bundle, and the report's JSON schema."""

import copy
import dataclasses
import gc
import json
import os
import re
import subprocess
import sys
import types
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsnet_export.bench.report import OverheadRow, Report, ReportError, check_report, format_report
from dsnet_export.cli import COMMANDS, main
from dsnet_export.errors import DsnetError


def _run_bench(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code = main(["bench", str(tiny_bundle.path), "--rounds", "2", "--warmup", "1", "--skip-memory", "--quiet",
                 "--idle-wait-ms", "50", "--block-ms", "2", "--e2e-samples", "24", "--e2e-rounds", "1",
                 "--json", str(out / "bench.json"), "--png", str(out / "bench.png")])
    return code, out


@pytest.fixture(scope="module")
def quick_bench_run(tiny_bundle, tmp_path_factory):
    """The bench command below, with the full garbage collection before each timed block skipped (it only
    steadies the timings): ~5 s instead of ~20 s, which go on ~115 gc.collect() calls over a test process's
    heap (torch, scikit-learn, matplotlib loaded).  Every section, table and JSON field is the same."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gc, "collect", lambda *args, **kwargs: 0)
        return _run_bench(tiny_bundle, tmp_path_factory)


@pytest.fixture(scope="module", params=["quick", pytest.param("as-run", marks=pytest.mark.slow)])
def bench_run(request, tiny_bundle, tmp_path_factory):
    """``python -m dsnet_export bench`` on the tiny bundle: quick (see ``quick_bench_run``), and exactly as a
    user runs it (slow: ``-m "not slow"`` leaves it out and keeps the quick equivalent)."""
    if request.param == "quick":
        return request.getfixturevalue("quick_bench_run")
    return _run_bench(tiny_bundle, tmp_path_factory)


def test_cli_writes_a_table_json_and_png(bench_run, capsys):
    code, out = bench_run
    assert code == 0
    assert "bench" in COMMANDS
    data = json.loads((out / "bench.json").read_text())
    check_report(data)
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    text = format_report(data)
    for heading in ("(a) overhead", "(b) mixed batch", "(c) route efficiency", "(d) memory and cold start: skipped",
                    "(e) end to end", "dynamic b1 / oracle mix"):
        assert heading in text


def test_report_holds_every_raw_number_and_every_comparison(bench_run):
    data = json.loads((bench_run[1] / "bench.json").read_text())
    gate_routes = data["bundle"]["gate_routes"]
    assert data["settings"]["batch_sizes"] == [1, 8] and data["settings"]["rounds"] == 2
    assert len(data["overhead"]) == 2 * len(gate_routes)
    assert all(len(c["seconds"]) == 2 * c["calls"] and 3 <= c["calls"] <= 50 for c in data["contenders"].values())
    assert len(data["round_orders"]) == 2 and data["round_orders"][0] != data["round_orders"][1]
    assert all(row["max_abs_diff"] < 1e-4 for row in data["overhead"])
    for row in data["overhead"]:  # every comparison names its contenders, measured in the same rounds
        for kind in ("dispatcher", "monolithic", "engines", "fused"):
            assert row[kind] in data["contenders"]
        assert row["goal"] in (1.05, 1.15) and row["per_call_goal_us"] == 30
        round_of = {name: i for i, order in enumerate(data["round_orders"]) for name in order}
        assert round_of[row["dispatcher"]] == round_of[row["monolithic"]]
    e2e = data["end_to_end"]
    assert e2e["data"]["samples"] == 24 and e2e["rounds"] == 1
    assert {"dynamic b1", "dynamic b8", "oracle mix"} <= set(e2e["contenders"])
    (mixed,) = data["mixed"]  # batch 8 only: a batch of one cannot mix routes
    assert mixed["batch"] == 8 and len(set(mixed["routes"])) == len(gate_routes)
    assert mixed["masking_torch_ms"] is not None and mixed["speedup_torch"] is not None
    assert mixed["masking_torch_official_ms"] is not None and mixed["speedup_torch_official"] is not None
    for key in ("max_abs_diff_torch", "max_abs_diff_torch_official", "max_abs_diff_onnx"):
        assert mixed[key] < 1e-4
    assert mixed["masking_width"] == "uniform:4"
    assert [e["engine"] for e in data["efficiency"]] == ["dispatcher", "monolithic"] * 2
    assert data["memory"] is None


def _broken(data, change):
    broken = copy.deepcopy(data)
    change(broken)
    return broken


@pytest.mark.parametrize("change, message", [
    (lambda d: d["overhead"][0].pop("ratio"), r"report\.overhead\[0\]\.ratio: missing field$"),
    (lambda d: d["overhead"][1].update(dispatcher_ms="slow"),
     r"report\.overhead\[1\]\.dispatcher_ms: expected a number, got str 'slow'$"),
    (lambda d: d["overhead"][0].update(macs=1.5), r"report\.overhead\[0\]\.macs: expected an integer, got float"),
    (lambda d: d["overhead"][0].update(ratio=True), r"report\.overhead\[0\]\.ratio: expected a number, got bool"),
    (lambda d: d["overhead"][0].update(dispatcher="nobody"),
     r"report\.overhead\[0\]\.dispatcher: 'nobody' is not a contender"),
    (lambda d: d["mixed"][0].update(speedup_onnx="fast"), r"report\.mixed\[0\]\.speedup_onnx: expected a number"),
    (lambda d: d["mixed"][0].update(speedup_onnx=None), r"report\.mixed\[0\]\.speedup_onnx: expected a number, "
                                                        r"got NoneType"),
    (lambda d: d["mixed"][0].update(biased=1), r"report\.mixed\[0\]\.biased: expected true or false, got int"),
    (lambda d: d["efficiency"][2].pop("fraction"), r"report\.efficiency\[2\]\.fraction: missing field"),
    (lambda d: d["efficiency"].append([]), r"report\.efficiency\[4\]: expected an object, got list"),
    (lambda d: d.update(mixed={}), r"report\.mixed: expected a list, got dict"),
    (lambda d: d.pop("end_to_end"), r"report\.end_to_end: missing field"),
    (lambda d: d.update(memory=[]), r"report\.memory: expected an object, got list"),
    (lambda d: d.update(settings="fast"), r"report\.settings: expected an object, got str"),
    (lambda d: d["contenders"][next(iter(d["contenders"]))].update(calls="3"),
     r"report\.contenders\['dispatcher/route\d+/b1'\]\.calls: expected an integer, got str"),
    (lambda d: d["contenders"][next(iter(d["contenders"]))]["seconds"].append(1.0),
     r"report\.contenders\['dispatcher/route\d+/b1'\]\.seconds: \d+ samples for 2 rounds of \d+ calls"),
    (lambda d: d.update(version=1), r"report\.version: unsupported version 1 \(this dsnet-export reads version 2\)"),
    (lambda d: d.update(schema="other"), r"report\.schema: unknown schema 'other'"),
    (lambda d: d.pop("schema"), r"report\.schema: missing field"),
])
def test_check_report_names_what_is_wrong(quick_bench_run, change, message):
    data = json.loads((quick_bench_run[1] / "bench.json").read_text())
    with pytest.raises(ReportError, match=message) as err:
        check_report(_broken(data, change))
    assert isinstance(err.value, ValueError) and isinstance(err.value, DsnetError)


def test_check_report_keeps_what_it_accepted(quick_bench_run):
    """Fields it does not declare stay free (readers must not rely on them); so do the free-form sections."""
    data = json.loads((quick_bench_run[1] / "bench.json").read_text())
    for change in (lambda d: d.update(surprise=[1, "x"]), lambda d: d["overhead"][0].update(extra={"a": None}),
                   lambda d: d["mixed"][0].update(masking_torch=None, masking_torch_ms=None, speedup_torch=None),
                   lambda d: d.update(end_to_end=None, environment={}, bundle={"anything": 1}),
                   lambda d: d["settings"].pop("memory_runs"), lambda d: d.update(overhead=[], contenders={}),
                   lambda d: d["efficiency"][0].update(fraction=None, ms_per_gmacs=[]),
                   lambda d: d["overhead"][0].update(ratio=1, per_call_us=float("nan"))):
        assert check_report(_broken(data, change)) is None


def _memory_report(data, tiny_bundle, runs: int = 3) -> dict:
    """``data`` with a memory section as the bench writes it (``_memory_summary`` of synthetic process runs)."""
    from dsnet_export.bench.runner import _memory_summary
    from dsnet_export.runtime import load_bundle

    ints = ("interpreter_rss", "baseline_rss", "load_rss", "first_call_rss", "load_anon", "first_call_anon",
            "first_call_file")
    floats = ("import_s", "load_s", "first_call_s", "cold_start_s", "hash_check_s")

    def run(kind, value, warmup=False):
        return {"kind": kind, "route": 0, "warmup": warmup, **{k: int(value) for k in ints},
                **{k: float(value) for k in floats}}

    raw = {kind: [run(kind, 1000, warmup=True), *(run(kind, i + 1) for i in range(runs))]
           for kind in ("dispatcher", "naive")}
    mem = _memory_summary(raw, load_bundle(tiny_bundle.path), ["a", "b"], 123)
    data = copy.deepcopy(data)
    data["memory"] = json.loads(json.dumps(mem))
    data["settings"]["memory_runs"] = runs
    return data


def _paths(node, path=()):
    """Every path into a JSON value (dict keys and list indexes), the root's ``()`` first."""
    yield path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _paths(child, (*path, key))


def _declared(tp, node, path=(), text="report"):
    """``(path, the path as check_report names it)`` of the values the schema declares in ``node`` (of a list or a
    map, the first item only)."""
    yield path, text
    options = [o for o in typing.get_args(tp) if o is not type(None)] if typing.get_origin(tp) is types.UnionType \
        else [tp]
    tp = options[0] if len(options) == 1 else tp
    if dataclasses.is_dataclass(tp) and isinstance(node, dict):
        hints = typing.get_type_hints(tp)
        for f in dataclasses.fields(tp):
            if f.name in node:
                yield from _declared(hints[f.name], node[f.name], (*path, f.name), f"{text}.{f.name}")
    elif typing.get_origin(tp) is list and isinstance(node, list):
        for i in range(min(len(node), 1)):
            yield from _declared(typing.get_args(tp)[0], node[i], (*path, i), f"{text}[{i}]")
    elif typing.get_origin(tp) is dict and isinstance(node, dict):
        for key in list(node)[:1]:
            yield from _declared(typing.get_args(tp)[1], node[key], (*path, key), f"{text}[{key!r}]")


def _mutate(data, path, action, value, key=""):
    """``data`` with the value at ``path`` replaced, deleted or given an extra key or item ("add"); shares what
    the change does not touch."""
    def add(node):
        return {**node, key: value} if isinstance(node, dict) else [*node, value] if isinstance(node, list) else node

    if not path:
        return value if action == "replace" else data if action == "delete" else add(data)
    data = copy.copy(data)
    head, rest = path[0], path[1:]
    if rest:
        data[head] = _mutate(data[head], rest, action, value, key)
    elif action == "replace":
        data[head] = value
    elif action == "delete":
        del data[head]
    else:
        data[head] = add(data[head])
    return data


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from([10 ** 400, -(10 ** 400), float("nan"), float("inf"), "", "dispatcher/route0/b1"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10)
_HYPOTHESIS = settings(max_examples=int(os.environ.get("DSNET_HYPOTHESIS_EXAMPLES", "150")), deadline=None,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def real_reports(quick_bench_run, tiny_bundle):
    """The quick bench's report, without and with a memory section; both pass."""
    plain = json.loads((quick_bench_run[1] / "bench.json").read_text())
    reports = [plain, _memory_report(plain, tiny_bundle)]
    for report in reports:
        check_report(report)
    return reports


@_HYPOTHESIS
@given(data=st.data())
def test_any_mutation_of_a_report_passes_or_is_a_report_error(real_reports, data):
    """Deleting, replacing or adding values anywhere in a real report (with and without a memory section; half the
    time where the schema declares something): ``check_report`` returns or raises ``ReportError`` naming a path
    from ``report``; never a KeyError, TypeError, AttributeError or OverflowError."""
    report = data.draw(st.sampled_from(real_reports), label="report")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        declared = [path for path, _ in _declared(Report, report)]
        paths = declared if data.draw(st.booleans(), label="declared") else list(_paths(report))
        path = paths[data.draw(st.integers(0, len(paths) - 1), label="path index")]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="action")
        report = _mutate(report, path, action, data.draw(_JSON, label="value"), data.draw(st.text(max_size=6)))
    try:
        check_report(report)
    except ReportError as exc:
        assert re.match(r"report[.:\[]", str(exc)), str(exc)


_WRONG = [None, True, 0, 1.5, 10 ** 400, "x", [{}], {}]
_CROSS_CHECKS = r"samples for \d+ rounds|is not a contender|measured runs"


def test_a_wrong_type_or_a_missing_value_anywhere_declared_is_named_by_its_path(real_reports):
    """Every declared value of a real report (with a memory section) replaced by each JSON type in turn, and
    deleted: ``check_report`` accepts it (the type fits, or the field is optional) or names that very path; or a
    consistency check fails."""
    checked, report = 0, real_reports[1]
    for path, text in _declared(Report, report):
        for action, value in [("delete", None), *(("replace", v) for v in _WRONG)]:
            try:
                check_report(_mutate(report, path, action, value))
            except ReportError as exc:
                message, checked = str(exc), checked + 1
                assert message.startswith((f"{text}:", f"{text}.", f"{text}[")) or re.search(_CROSS_CHECKS, message), \
                    (action, value, message)
    assert checked > 500


@pytest.mark.parametrize("change, message", [
    (lambda d: d["memory"]["runs"].update(naive=7), r"report\.memory\.runs\['naive'\]: expected a list, got int"),
    (lambda d: d["memory"]["runs"]["naive"][1].update(warmup="no"),
     r"report\.memory\.runs\['naive'\]\[1\]\.warmup: expected true or false, got str"),
    (lambda d: d["memory"]["runs"]["dispatcher"][0].pop("load_rss"),
     r"report\.memory\.runs\['dispatcher'\]\[0\]\.load_rss: missing field"),
    (lambda d: d["settings"].pop("memory_runs"), r"report\.settings\.memory_runs: missing or null"),
    (lambda d: d["settings"].update(memory_runs=4), r"report\.memory\.runs\['dispatcher'\]: not 4 measured runs"),
    (lambda d: d["memory"].update(median=[]), r"report\.memory\.median: expected an object, got list"),
])
def test_check_report_names_what_is_wrong_in_the_memory_section(real_reports, change, message):
    with pytest.raises(ReportError, match=message):
        check_report(_broken(real_reports[1], change))


@pytest.mark.parametrize("field", sorted(f.name for f in dataclasses.fields(OverheadRow)))
def test_every_declared_overhead_field_is_required_and_named(quick_bench_run, field):
    data = json.loads((quick_bench_run[1] / "bench.json").read_text())
    with pytest.raises(ReportError, match=rf"^report\.overhead\[1\]\.{field}: missing field$"):
        check_report(_broken(data, lambda d: d["overhead"][1].pop(field)))


def test_no_torch_skips_the_pytorch_column_with_a_note(tiny_bundle, tmp_path, capsys):
    assert main(["bench", str(tiny_bundle.path), "--rounds", "1", "--warmup", "0", "--skip-memory", "--quiet",
                 "--no-torch", "--batch-sizes", "4", "--idle-wait-ms", "0", "--skip-e2e", "--block-ms", "1",
                 "--json", str(tmp_path / "b.json")]) == 0
    data = json.loads((tmp_path / "b.json").read_text())
    check_report(data)
    assert data["mixed"][0]["masking_torch_ms"] is None and data["settings"]["torch"] is False
    assert data["mixed"][0]["masking_torch_official_ms"] is None
    assert any("PyTorch masking skipped" in n for n in data["notes"])
    assert data["end_to_end"] is None
    assert "masking torch" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--batch-sizes", "0,8"], "positive integers"),
    (["--rounds", "0"], "--rounds must be at least 1"),
    (["--block-ms", "0"], "--block-ms must be positive"),
    (["--e2e-rounds", "0"], "--e2e-rounds must be at least 1"),
    (["--labelled", "/no/such/folder", "--e2e-samples", "0"], "--e2e-samples must be at least 1"),
])
def test_bad_arguments(tiny_bundle, capsys, argv, message):
    try:
        code = main(["bench", str(tiny_bundle.path), "--quiet", "--skip-memory", *argv])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    assert code != 0
    assert message in capsys.readouterr().err


def test_bench_modules_do_not_import_torch_until_the_torch_baseline_runs():
    code = ("import sys, dsnet_export.bench, dsnet_export.cli.bench, dsnet_export.bench.runner, "
            "dsnet_export.bench.masking_torch, dsnet_export.bench.memory; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_memory_section_of_the_report(quick_bench_run, tiny_bundle):
    """Medians leave the warm-up processes out; the schema holds with a memory section."""
    from dsnet_export.bench.runner import _memory_summary
    from dsnet_export.runtime import load_bundle

    data = json.loads((quick_bench_run[1] / "bench.json").read_text())
    ints = ("interpreter_rss", "baseline_rss", "load_rss", "first_call_rss", "load_anon", "first_call_anon",
            "first_call_file")
    floats = ("import_s", "load_s", "first_call_s", "cold_start_s", "hash_check_s")

    def run(kind, value, warmup=False):
        return {"kind": kind, "route": 0, "warmup": warmup, **{k: int(value) for k in ints},
                **{k: float(value) for k in floats}}

    raw = {kind: [run(kind, 1000, warmup=True), run(kind, 1), run(kind, 3), run(kind, 2)]
           for kind in ("dispatcher", "naive")}
    mem = _memory_summary(raw, load_bundle(tiny_bundle.path), ["a", "b"], 123)
    assert mem["median"]["dispatcher"]["load_s"] == 2.0 and mem["ratio"]["cold_start_s"] == 1.0
    data["memory"] = json.loads(json.dumps(mem))
    data["settings"]["memory_runs"] = 3
    check_report(data)
    assert "after 1 warm-up process each" in format_report(data)
    data["settings"]["memory_runs"] = 4
    with pytest.raises(ValueError, match="measured runs"):
        check_report(data)


def test_the_dynamic_network_is_compared_with_the_static_widest_route(bench_run):
    """(b2): batch 1 = the mean of the dispatcher's per-route latencies (each call one route), batch 8 = the
    mixed batch; both against the widest gate route's monolithic network measured in (a)."""
    from dsnet_export.bench.report import versus_widest

    data = json.loads((bench_run[1] / "bench.json").read_text())
    rows = {r["batch"]: r for r in versus_widest(data)}
    assert set(rows) == {1, 8}
    routes = [r for r in data["overhead"] if r["batch"] == 1 and r["route"] < len(data["bundle"]["gate_routes"])]
    assert rows[1]["dynamic_ms"] == pytest.approx(sum(r["dispatcher_ms"] for r in routes) / len(routes))
    assert rows[1]["widest_ms"] == max(routes, key=lambda r: r["route"])["monolithic_ms"]
    mixed = next(m for m in data["mixed"] if m["batch"] == 8)
    assert rows[8]["dynamic_ms"] == mixed["dispatcher_ms"] and rows[8]["avg_macs"] == mixed["avg_macs"]
    assert rows[8]["speedup"] == pytest.approx(rows[8]["widest_ms"] / rows[8]["dynamic_ms"])
    assert "(b2) the dynamic network vs the static widest route" in format_report(data)
