"""The commands a Jetson runs (numpy, onnxruntime, TensorRT, cuda-python: no torch, no tqdm) work or fail in
one clear line there.  Each case runs in a fresh interpreter whose imports of torch and tqdm fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FAKES = Path(__file__).resolve().parents[1] / "trt" / "fakes.py"

# argv[1]: path of tests/trt/fakes.py to install a fake TensorRT + CUDA runtime, or ''; argv[2:]: the command.
PRELUDE = r"""
import sys

class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "tqdm"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, _Blocked())
if sys.argv[1]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("trt_fakes", sys.argv[1])
    fakes = sys.modules["trt_fakes"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fakes)

    class _Patch:
        def setitem(self, mapping, key, value):
            mapping[key] = value

    sys.modules["tensorrt"] = fakes.make_fake_trt("10.3.0")
    fakes.install_cudart(_Patch(), fakes.FakeCudart(), "new")
from dsnet_export.cli import main

code = main(sys.argv[2:])
assert "torch" not in sys.modules and "tqdm" not in sys.modules
sys.exit(code)
"""


def run_without_torch(args: list[str], cwd: Path, *, fake_gpu: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE, str(FAKES) if fake_gpu else "", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_bundle.path, copy)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32))
    from PIL import Image

    rng = np.random.default_rng(1)
    for label in range(10):  # a labelled folder for the tiny bundle's 10 classes
        (tmp_path / "imgs" / str(label)).mkdir(parents=True)
        pixels = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "imgs" / str(label) / "a.jpg")
    return copy


def test_the_blocker_blocks(tmp_path):
    result = subprocess.run([sys.executable, "-c", PRELUDE.replace("code = main(sys.argv[2:])", "import torch"), ""],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "blocked by the test" in result.stderr


@pytest.mark.parametrize("args", [
    ["inspect", "tiny"],
    ["verify", "tiny"],
    ["run", "tiny", "x.npy", "--top", "2"],
    ["calibrate", "tiny", "--data", "x.npy", "--target-macs", "1G", "--out", "budget.json"],
    ["run", "tiny", "imgs", "--batch", "4"],
    ["eval", "tiny", "--dataset", "imgs", "--json", "eval.json"],
    ["calibrate", "tiny", "--data", "imgs", "--target-macs", "1G", "--out", "budget.json"],
], ids=["inspect", "verify", "run", "calibrate", "run-images", "eval-folder", "calibrate-images"])
def test_runtime_commands_need_no_torch(bundle, args):
    result = run_without_torch(args, bundle.parent)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_verify_checkpoint_says_it_needs_torch(bundle, tiny_checkpoint):
    result = run_without_torch(["verify", "tiny", "--checkpoint", tiny_checkpoint], bundle.parent)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "needs torch: pip install 'dsnet-export[export]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "files match" not in result.stdout  # it says so before hashing the bundle


@pytest.mark.parametrize("args", [["verify", "tiny", "--backend", "trt"], ["build-trt", "tiny"],
                                  ["build", "--trt", "--bundle", "tiny"], ["run", "tiny", "x.npy", "--backend", "trt"]],
                         ids=["verify-trt", "build-trt", "build-trt-bundle", "run-trt"])
def test_tensorrt_commands_without_tensorrt_name_what_is_missing(bundle, args):
    result = run_without_torch(args, bundle.parent)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "TensorRT's Python package is not installed" in result.stderr
    assert "torch" not in result.stderr.replace("dsnet-export[trt]", "")


@pytest.mark.parametrize("command", [["build-trt", "tiny"], ["build", "--trt", "--bundle", "tiny"]],
                         ids=["build-trt", "build-trt-bundle"])
@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "progress"])
def test_build_trt_bundle_and_verify_need_neither_torch_nor_tqdm(bundle, quiet, command):
    """With TensorRT present (a fake one here) the Jetson commands run to the end without torch and tqdm."""
    result = run_without_torch([*command, "--max-batch", "4", *(["--quiet"] if quiet else [])], bundle.parent,
                               fake_gpu=True)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "check them" in result.stdout
    if not quiet:  # the plain progress lines that stand in for tqdm
        assert "gate.onnx (1/" in result.stderr
    result = run_without_torch(["verify", "tiny", "--backend", "trt", "--samples", "2"], bundle.parent, fake_gpu=True)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "MISMATCH" not in result.stdout


def test_the_sample_app_needs_no_torch(bundle):
    """The Jetson sample on an image folder, ONNX Runtime backend, annotated images to a folder."""
    script = Path(__file__).resolve().parents[2] / "samples" / "jetson" / "classify.py"
    prelude = PRELUDE.replace("from dsnet_export.cli import main\n\ncode = main(sys.argv[2:])",
                              f"import runpy\nsys.argv = [{str(script)!r}, *sys.argv[2:]]\ncode = 0\n"
                              f"runpy.run_path({str(script)!r}, run_name='__main__')")
    assert prelude != PRELUDE
    result = subprocess.run([sys.executable, "-c", prelude, "", "tiny", "imgs", "out", "--backend", "ort"],
                            cwd=bundle.parent, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and len(list((bundle.parent / "out").rglob("*.jpg"))) == 10
