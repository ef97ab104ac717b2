"""build --trt on a machine without a GPU: the whole flow against fake TensorRT + CUDA modules."""

import json

import numpy as np
import pytest

from dsnet_export import BundleError, DsnetError
from dsnet_export.cli import main
from dsnet_export.runtime import Dispatcher, load_bundle
from dsnet_export.trt.plans import build_plans


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_plans_are_built_recorded_and_hashed(fake_gpu, bundle_copy, precision, tmp_path):
    trt, _ = fake_gpu
    cache = tmp_path / "timing.cache"
    report = build_plans(bundle_copy, precision=precision, max_batch=6, opt_batch=4, timing_cache=cache,
                         progress=False)
    m = load_bundle(bundle_copy).manifest
    (plans,) = m.trt
    assert plans.tag == f"nvidia-jetson-orin-sm87-trt{trt.__version__}" == report.device.tag
    assert plans.precision == precision and plans.stripped and (plans.opt_batch, plans.max_batch) == (4, 6)
    engines = {m.gate.file, *(r.file for r in m.routes)}
    assert set(plans.plans) == engines and all(p in m.files for p in plans.plans.values())
    builds = [h for kind, h in trt.log if kind == "build"]
    assert len(builds) == len(engines)
    assert all(h["profile"][next(iter(h["profile"]))][2][0] == 6 for h in builds)
    assert cache.is_file()


def test_rebuilding_the_same_device_replaces_its_plans_and_keeps_other_files(fake_gpu, bundle_copy):
    (bundle_copy / "budget.json").write_text("{}")
    build_plans(bundle_copy, progress=False)
    build_plans(bundle_copy, precision="fp16", progress=False)
    m = load_bundle(bundle_copy).manifest
    assert [p.precision for p in m.trt] == ["fp16"]
    plan_files = sorted(p.relative_to(bundle_copy).as_posix() for p in (bundle_copy / "trt").rglob("*.plan"))
    assert plan_files == sorted(m.trt[0].plans.values())
    assert (bundle_copy / "budget.json").read_text() == "{}"


def test_a_failed_plan_build_leaves_the_bundle_untouched(fake_gpu, bundle_copy, monkeypatch):
    trt, _ = fake_gpu
    before = {p: p.read_bytes() for p in bundle_copy.rglob("*") if p.is_file()}
    calls = {"n": 0}
    real = trt.Builder.build_serialized_network

    def flaky(self, network, config):
        calls["n"] += 1
        return None if calls["n"] == 3 else real(self, network, config)

    monkeypatch.setattr(trt.Builder, "build_serialized_network", flaky)
    with pytest.raises(DsnetError, match="failed to build"):
        build_plans(bundle_copy, progress=False)
    assert {p: p.read_bytes() for p in bundle_copy.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in bundle_copy.parent.iterdir()) == ["tiny"]


def test_manifest_rejects_inconsistent_plans(fake_gpu, bundle_copy):
    build_plans(bundle_copy, progress=False)
    path = bundle_copy / "manifest.json"
    data = json.loads(path.read_text())
    data["trt"][0]["plans"].pop("gate.onnx")
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"trt\[0\].plans"):
        load_bundle(bundle_copy)


def test_budget_survives_adding_plans(fake_gpu, bundle_copy, mixed_batch, tmp_path):
    np.save(tmp_path / "calib.npy", mixed_batch[0])
    assert main(["calibrate", str(bundle_copy), "--data", str(tmp_path / "calib.npy"), "--target-macs", "1G"]) == 0
    build_plans(bundle_copy, progress=False)
    Dispatcher.load(bundle_copy, budget=True).close()


def test_cli_build_trt_on_an_existing_bundle(fake_gpu, bundle_copy, capsys):
    assert main(["build", "--trt", "--bundle", str(bundle_copy), "--precision", "fp16", "--max-batch", "4",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "route_3.plan" in out and "weight-stripped" in out and "verify" in out


def test_without_tensorrt_the_onnx_bundle_is_written_and_the_error_says_what_to_run(tiny_checkpoint, tmp_path,
                                                                                   capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    out = tmp_path / "b"
    assert main(["build", "--trt", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--quiet",
                 "--precision", "fp16"]) == 1
    err = capsys.readouterr().err
    assert "TensorRT's Python package is not installed" in err
    assert f"python -m dsnet_export build-trt {out} --precision fp16 --max-batch 8" in err
    assert load_bundle(out).manifest.trt == []
    with pytest.raises(DsnetError, match="not installed"):
        Dispatcher.load(out, backend="trt")


def test_no_gpu(monkeypatch, bundle_copy):
    import sys

    from .fakes import FakeCudart, install_cudart, make_fake_trt

    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("10.3.0"))
    install_cudart(monkeypatch, FakeCudart(devices=0))
    with pytest.raises(DsnetError, match="no usable CUDA device"):
        build_plans(bundle_copy, progress=False)
