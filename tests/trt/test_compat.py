"""The version layer against fakes of both API generations, device tags and profiles."""

import sys

import pytest

from dsnet_export.errors import DsnetError
from dsnet_export.runtime.backends.trt.compat import TrtApi, TrtUnavailable, load_cudart, parse_version
from dsnet_export.runtime.backends.trt.device import device_tag
from dsnet_export.trt.profiles import BatchProfile

from .fakes import FakeCudart, install_cudart, make_fake_trt


def _config_flags(version, precision, strip):
    api = TrtApi.load(make_fake_trt(version))
    config = api.trt.Builder(None).create_builder_config()
    api.configure(config, precision=precision, strip=strip, workspace_bytes=1 << 20)
    return api, config


@pytest.mark.parametrize("version, precision, strip, expected", [
    ("10.3.0", "fp32", True, {"STRIP_PLAN", "REFIT_IDENTICAL"}),
    ("10.3.0", "fp16", True, {"FP16", "TF32", "STRIP_PLAN", "REFIT_IDENTICAL"}),
    ("10.3.0", "fp32", False, set()),
    ("11.4.0", "fp16", True, {"TF32", "STRIP_PLAN", "REFIT_IDENTICAL"}),
    ("11.0.0", "fp32", False, set()),
])
def test_builder_flags_per_generation(version, precision, strip, expected):
    api, config = _config_flags(version, precision, strip)
    assert config.flags == expected
    assert config.pool == {"WORKSPACE": 1 << 20}


def test_fp16_means_an_fp16_graph_only_on_strongly_typed_tensorrt_11():
    old, new = TrtApi.load(make_fake_trt("10.3.0")), TrtApi.load(make_fake_trt("11.4.0"))
    assert not old.fp16_graph("fp16") and old.network_flags() == 0
    assert new.fp16_graph("fp16") and not new.fp16_graph("fp32")
    assert new.network_flags() == 1 << 1


@pytest.mark.parametrize("text, expected", [("10.3.0", (10, 3, 0)), ("11.4.0.106", (11, 4, 0)), ("10.13", (10, 13))])
def test_version_parsing(text, expected):
    assert parse_version(text) == expected


def test_too_old_or_missing_tensorrt(monkeypatch):
    with pytest.raises(TrtUnavailable, match="too old"):
        TrtApi.load(make_fake_trt("8.6.1"))
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(TrtUnavailable, match="TensorRT's Python package is not installed.*JetPack 6"):
        TrtApi.load()


@pytest.mark.parametrize("location", ["new", "old"])
def test_cuda_bindings_both_locations(monkeypatch, location):
    cudart = FakeCudart()
    install_cudart(monkeypatch, cudart, location)
    assert load_cudart() is cudart


def test_missing_cuda_bindings(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda", None)
    with pytest.raises(TrtUnavailable, match="pip install cuda-python"):
        load_cudart()


@pytest.mark.parametrize("gpu, cc, version, tag", [
    ("Orin", (8, 7), "10.3.0", "orin-sm87-trt10.3.0"),
    ("NVIDIA GeForce RTX 4090", (8, 9), "10.13.0.35", "nvidia-geforce-rtx-4090-sm89-trt10.13.0.35"),
    ("", (7, 5), "11.4.0", "gpu-sm75-trt11.4.0"),
])
def test_device_tags(gpu, cc, version, tag):
    assert device_tag(gpu, cc, version) == tag


def test_profiles():
    assert BatchProfile.make(8).shapes((3, 32, 32)) == ((1, 3, 32, 32), (8, 3, 32, 32), (8, 3, 32, 32))
    assert BatchProfile.make(16, 4).shapes((5,))[1] == (4, 5)
    for bad in [(0, None), (8, 9), (8, 0), (5000, None)]:
        with pytest.raises(DsnetError):
            BatchProfile.make(*bad)
