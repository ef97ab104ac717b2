import shutil
import sys

import pytest

from .fakes import FakeCudart, install_cudart, make_fake_trt


@pytest.fixture(params=["10.3.0", "11.4.0"])
def fake_gpu(request, monkeypatch):
    """A fake TensorRT of each API generation and a fake CUDA runtime, installed as the real modules."""
    trt = make_fake_trt(request.param)
    cudart = FakeCudart()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    install_cudart(monkeypatch, cudart, "new" if request.param.startswith("11") else "old")
    return trt, cudart


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_bundle.path, copy)
    return copy
