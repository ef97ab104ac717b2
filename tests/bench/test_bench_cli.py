"""``python -m dsnet_export bench`` end to end on the tiny bundle, and the report's JSON schema."""

import copy
import gc
import json
import subprocess
import sys

import pytest

from dsnet_export.bench.report import check_report, format_report
from dsnet_export.cli import COMMANDS, main


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


def test_check_report_names_what_is_wrong(quick_bench_run):
    data = json.loads((quick_bench_run[1] / "bench.json").read_text())
    broken = copy.deepcopy(data)
    del broken["overhead"][0]["ratio"]
    with pytest.raises(ValueError, match=r"overhead\[0\]: missing 'ratio'"):
        check_report(broken)
    broken = copy.deepcopy(data)
    broken["mixed"][0]["speedup_onnx"] = "fast"
    with pytest.raises(ValueError, match="speedup_onnx"):
        check_report(broken)
    broken = copy.deepcopy(data)
    broken["contenders"][next(iter(broken["contenders"]))]["seconds"].append(1.0)
    with pytest.raises(ValueError, match="samples for 2 rounds"):
        check_report(broken)


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
