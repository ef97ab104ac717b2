"""The OpenVINO backend: the bundle's ONNX engines read as they are, every engine equal to ONNX Runtime's.

Skipped with a reason without the ``openvino`` package; CI installs it (the ``openvino`` extra)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from dsnet_export.errors import DsnetError
from dsnet_export.runtime import Dispatcher

pytest.importorskip("openvino", reason="the openvino backend needs the openvino package (pip install openvino)")

from dsnet_export.runtime.backends.openvino import OpenVinoOptions  # noqa: E402

TOLERANCE = {"atol": 1e-4, "rtol": 1e-5}


def _every_route_equals_onnx_runtime(bundle_dir, x):
    with Dispatcher.load(bundle_dir) as ort, Dispatcher.load(bundle_dir, "openvino") as ov:
        assert not ov.shared_weights
        np.testing.assert_allclose(ov.gate_logits(x), ort.gate_logits(x), **TOLERANCE)
        for route in ort.routes:
            np.testing.assert_allclose(ov.run(x, route.name).logits, ort.run(x, route.name).logits, **TOLERANCE)
        a, b = ort(x), ov(x)
        np.testing.assert_array_equal(b.routes, a.routes)
        np.testing.assert_allclose(b.logits, a.logits, **TOLERANCE)


@pytest.mark.parametrize("n", [1, 3, 8])
def test_tiny_bundle_every_route_forced_and_fixed(tiny_bundle, mixed_batch, n):
    x, _ = mixed_batch
    _every_route_equals_onnx_runtime(tiny_bundle.path, x[:n])


def test_digits_bundle(tmp_path_factory):
    """The embedded default model's bundle, on real digits test images."""
    from dsnet_export.datasets import load_digits
    from dsnet_export.export import build_bundle
    from dsnet_export.imaging import Preprocessing
    from dsnet_export.runtime import load_bundle

    bundle = build_bundle(out=tmp_path_factory.mktemp("digits") / "bundle", progress=False).path
    data = load_digits(Preprocessing.from_manifest(load_bundle(bundle).manifest.input))
    x, _ = data.normalized("test")
    _every_route_equals_onnx_runtime(bundle, np.ascontiguousarray(x[:16], np.float32))


def test_oracle_bundle(oracle_bundle, oracle):
    x = np.load(oracle / "oracle_inputs.npz")
    x = x[x.files[0]][:4].astype(np.float32)
    _every_route_equals_onnx_runtime(oracle_bundle.path, x)


def test_dynamic_routing_under_a_gate_bias_gives_the_same_routes(tiny_bundle, mixed_batch):
    x, bias = mixed_batch
    with Dispatcher.load(tiny_bundle.path) as ort, Dispatcher.load(tiny_bundle.path, "openvino") as ov:
        ort.gate_bias = ov.gate_bias = bias
        a, b = ort(x), ov(x)
    assert len(set(a.routes.tolist())) == 4
    np.testing.assert_array_equal(b.routes, a.routes)
    np.testing.assert_allclose(b.logits, a.logits, **TOLERANCE)


def test_f32_by_default_and_options_pass_through(tiny_bundle):
    with Dispatcher.load(tiny_bundle.path, "openvino") as ov:
        ov.backend.load(ov.manifest.gate.file)
        compiled = ov.backend._compiled[ov.manifest.gate.file]
        assert "float32" in str(compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
    with Dispatcher.load(tiny_bundle.path, "openvino", OpenVinoOptions(threads=1, precision="bf16")) as ov:
        ov.backend.load(ov.manifest.gate.file)
        compiled = ov.backend._compiled[ov.manifest.gate.file]
        assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1


@pytest.mark.parametrize(("options", "message"), [
    ({"device": ""}, "device must be a device name"),
    ({"precision": "int8"}, "precision must be one of f32, bf16, f16"),
    ({"threads": 0}, "threads must be a positive integer"),
    ({"threads": True}, "threads must be a positive integer"),
])
def test_bad_options_are_errors(options, message):
    with pytest.raises(DsnetError, match=message):
        OpenVinoOptions(**options)


def test_a_device_this_machine_lacks_is_named(tiny_bundle):
    with pytest.raises(DsnetError, match=r"OpenVINO has no device NPU here \(available: .*CPU"):
        Dispatcher.load(tiny_bundle.path, "openvino", OpenVinoOptions(device="NPU"))


def test_threads_each_get_their_own_request(tiny_bundle, mixed_batch):
    x, _ = mixed_batch
    results, errors = {}, []
    with Dispatcher.load(tiny_bundle.path, "openvino") as ov:
        expected = ov(x).logits

        def work(i):
            try:
                for _ in range(20):
                    results[i] = ov(x).logits
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    for logits in results.values():
        np.testing.assert_array_equal(logits, expected)
    with pytest.raises(DsnetError, match="closed"):
        ov(x)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "dsnet_export", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_commands_run_on_openvino(tiny_bundle, tmp_path, mixed_batch):
    x, _ = mixed_batch
    np.save(tmp_path / "x.npy", x[:5])
    ort = _cli("run", tiny_bundle.path, tmp_path / "x.npy", "--json", "-")
    ov = _cli("run", tiny_bundle.path, tmp_path / "x.npy", "--json", "-", "--backend", "openvino", "--threads", "1")
    assert ort.returncode == 0 and ov.returncode == 0, ov.stderr
    a, b = json.loads(ort.stdout)["inputs"], json.loads(ov.stdout)["inputs"]
    assert a.keys() == b.keys() and all(a[k]["routes"] == b[k]["routes"] for k in a)
    for k in a:
        np.testing.assert_allclose(b[k]["logits"], a[k]["logits"], **TOLERANCE)
    verified = _cli("verify", tiny_bundle.path, "--backend", "openvino", "--json", "-")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["precision"] == "f32"
    wrong = _cli("run", tiny_bundle.path, tmp_path / "x.npy", "--ov-device", "GPU")
    assert wrong.returncode != 0 and "--ov-device and --ov-precision are OpenVINO options" in wrong.stderr


def test_bench_compares_openvino_with_onnx_runtime(tiny_bundle):
    done = _cli("bench", tiny_bundle.path, "--backend", "openvino", "--rounds", "1", "--batch-sizes", "1,4",
                "--block-ms", "3", "--json", "-", "--quiet")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["backend"] == "openvino" and report["shared_weights"] is False
    cases = [(r["batch"], r["case"]) for r in report["rows"]]
    gate_routes = 4
    assert len(cases) == 2 * (gate_routes + 1) and {b for b, _ in cases} == {1, 4}
    assert sum(case.startswith("dynamic") for _, case in cases) == 2
    for row in report["rows"]:
        assert row["same_routes"] and row["max_abs_diff"] < 1e-4 and row["ratio"] > 0
        assert row["ort_ms"] > 0 and row["other_ms"] > 0
    refused = _cli("bench", tiny_bundle.path, "--backend", "openvino", "--png", "x.png")
    assert refused.returncode != 0 and "--png and --shared-pool belong to the ONNX Runtime bench" in refused.stderr
