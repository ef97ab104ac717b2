"""Memory and cold start are measured in fresh processes (the numbers are recorded, never asserted on)."""

from dsnet_export.bench import memory
from dsnet_export.bench.contenders import BundleContext, write_naive_deployment
from dsnet_export.runtime import load_bundle


def test_fresh_process_measurements_of_both_deployments(tiny_bundle, tmp_path):
    ctx = BundleContext.open(load_bundle(tiny_bundle.path))
    files = write_naive_deployment(ctx, tmp_path / "naive")
    raw = memory.measure(tiny_bundle.path, files, runs=1, threads=1, warmup=0)
    assert set(raw) == {"dispatcher", "naive"}
    for kind, (run,) in raw.items():
        assert run["kind"] == kind and run["warmup"] is False
        assert run["load_s"] > 0 and run["first_call_s"] > 0
        assert run["cold_start_s"] >= run["load_s"]
        assert run["baseline_rss"] > run["interpreter_rss"] > 0  # importing onnxruntime costs memory
        assert isinstance(run["load_rss"], int) and isinstance(run["first_call_rss"], int)
    assert raw["dispatcher"][0]["route"] == raw["naive"][0]["route"]  # same input, same gate decision
    assert raw["dispatcher"][0]["hash_check_s"] > 0


def test_rss_is_read():
    rss = memory.rss_bytes()
    assert rss["rss"] > 0


def test_warmup_runs_are_kept_but_left_out_of_medians(monkeypatch):
    calls = []

    def fake_once(kind, bundle, files, threads, seed):
        calls.append((kind, seed))
        return {"kind": kind, "seed": seed}

    monkeypatch.setattr(memory, "measure_once", fake_once)
    raw = memory.measure("bundle", [], runs=2, warmup=1)
    assert calls == [("dispatcher", 0), ("naive", 0), ("naive", 1), ("dispatcher", 1),
                     ("dispatcher", 2), ("naive", 2)]  # order alternates run by run
    assert [r["warmup"] for r in raw["naive"]] == [True, False, False]
    assert [r["seed"] for r in memory.measured(raw["naive"])] == [1, 2]
