"""The TensorRT backend's own logic (buffers, shapes, gathering, refit, batching) on fake modules.

The fake engines compute with ONNX Runtime from the ONNX the plan was built from, so fp32 plans
must match the ONNX Runtime dispatcher exactly and a wrong refit or row gather shows in the logits.
"""

import json
import threading

import numpy as np
import pytest

from dsnet_export import DsnetError
from dsnet_export.cli import main
from dsnet_export.runtime import Dispatcher
from dsnet_export.runtime.backends.ort import OrtOptions
from dsnet_export.trt.plans import build_plans


@pytest.fixture
def planned(fake_gpu, bundle_copy):
    build_plans(bundle_copy, max_batch=8, opt_batch=4, progress=False)
    return bundle_copy


def test_per_sample_routing_matches_onnx_runtime(planned, mixed_batch):
    x, bias = mixed_batch
    with Dispatcher.load(planned, backend="trt") as trt, Dispatcher.load(planned) as ref:
        assert trt.backend.name == "trt" and trt.shared_weights
        trt.gate_bias = ref.gate_bias = bias
        a, b = trt(x), ref(x)  # 32 samples: four chunks of the plans' max batch 8
    assert len(set(a.routes.tolist())) == 4
    assert a.routes.tolist() == b.routes.tolist()
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-6)
    np.testing.assert_allclose(a.gate_logits, b.gate_logits, atol=1e-6)


def test_rows_are_gathered_on_the_device(planned, mixed_batch, fake_gpu):
    _, cudart = fake_gpu
    x, bias = mixed_batch
    with Dispatcher.load(planned, backend="trt") as trt:
        trt.gate_bias = bias
        cudart.copies.clear()
        result = trt(x[:8])
    assert "dtod" in cudart.copies and len(set(result.routes.tolist())) > 1


@pytest.mark.parametrize("route", [0, 3, "uniform:4", "largest"])
def test_forced_and_fixed_routes(planned, mixed_batch, route):
    x = mixed_batch[0][:5]
    with Dispatcher.load(planned, backend="trt") as trt, Dispatcher.load(planned) as ref:
        np.testing.assert_allclose(trt.run(x, route=route).logits, ref.run(x, route=route).logits, atol=1e-6)


def test_fp16_plans_stay_within_the_fp16_tolerance(fake_gpu, bundle_copy, mixed_batch):
    """fp16 on either API: the FP16 flag (10.x) or a float16 graph (11.x); the fakes then compute in float16."""
    trt_module, _ = fake_gpu
    build_plans(bundle_copy, precision="fp16", progress=False)
    x = mixed_batch[0][:6]
    with Dispatcher.load(bundle_copy, backend="trt") as trt, Dispatcher.load(bundle_copy) as ref:
        got, want = trt.run(x, route=2), ref.run(x, route=2)
    for a, b in ((got.logits, want.logits), (got.gate_logits, want.gate_logits)):
        error = np.max(np.abs(a - b)) / np.max(np.abs(b))
        # Really float16 (here about 3e-4 and 8e-4; fp32 plans agree exactly), and within the fp16 tolerance.
        assert 1e-5 < error < 2e-2, error
    flags = [h["flags"] for kind, h in trt_module.log if kind == "build"]
    assert flags and all(("FP16" in f) == trt_module.__version__.startswith("10.") for f in flags)


def test_verify_backend_trt(planned, tmp_path, capsys):
    np.save(tmp_path / "user.npy", np.random.default_rng(3).standard_normal((3, 3, 32, 32)).astype(np.float32))
    assert main(["verify", str(planned), "--backend", "trt", "--inputs", str(tmp_path / "user.npy")]) == 0
    out = capsys.readouterr().out
    assert "vs ONNX Runtime CPU" in out and "user.npy" in out and "NO" not in out


def test_refit_uses_the_identical_variant(planned):
    """A changed variant (different weights) must be refused, not silently refitted."""
    manifest = json.loads((planned / "manifest.json").read_text())
    manifest["trt"][0]["variants"]["route_1.onnx"] = "0" * 64
    (planned / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DsnetError, match="differs from the one the plan was built from"):
        Dispatcher.load(planned, backend="trt", verify=False)


def test_full_plans_need_no_refit(fake_gpu, bundle_copy, mixed_batch):
    build_plans(bundle_copy, strip=False, progress=False)
    with Dispatcher.load(bundle_copy, backend="trt") as trt, Dispatcher.load(bundle_copy) as ref:
        assert not trt.shared_weights
        np.testing.assert_allclose(trt(mixed_batch[0][:4]).logits, ref(mixed_batch[0][:4]).logits, atol=1e-6)


def test_no_plans_for_this_device(fake_gpu, bundle_copy, monkeypatch):
    _, cudart = fake_gpu
    build_plans(bundle_copy, progress=False)
    monkeypatch.setattr(cudart, "gpu", b"Other GPU")
    with pytest.raises(DsnetError, match="no TensorRT plans for this device.*build-trt"):
        Dispatcher.load(bundle_copy, backend="trt")


def test_threads_and_close_release_everything(planned, mixed_batch, fake_gpu):
    _, cudart = fake_gpu
    x = mixed_batch[0]
    trt = Dispatcher.load(planned, backend="trt")
    expected = [trt(x[i:i + 5]).logits for i in range(0, 30, 5)]
    errors = []

    def worker():
        try:
            for i in range(0, 30, 5):
                np.testing.assert_allclose(trt(x[i:i + 5]).logits, expected[i // 5], atol=0)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    trt.close()
    assert cudart.device_mem == {} and cudart.host_mem == {}
    with pytest.raises(DsnetError, match="closed"):
        trt.run(x[:1], route=0)


def test_providers_are_an_onnx_runtime_option(planned):
    with pytest.raises(DsnetError, match="'trt' backend .* takes TrtOptions .* got OrtOptions") as caught:
        Dispatcher.load(planned, "trt", OrtOptions(providers="cuda"))
    assert isinstance(caught.value, TypeError)
