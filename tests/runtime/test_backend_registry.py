"""Backends are chosen by name and imported only when chosen."""

import subprocess
import sys

import numpy as np
import pytest

from dsnet_export import DsnetError
from dsnet_export.runtime import Dispatcher
from dsnet_export.runtime.backends import backend_class, backend_names, register_backend


class CountingBackend(backend_class("ort")):
    """ONNX Runtime, counting gate runs: stands for a backend registered from outside the package."""

    gate_runs = 0

    def run_gate(self, x):
        type(self).gate_runs += 1
        return super().run_gate(x)


def test_a_registered_backend_serves_the_dispatcher(tiny_bundle):
    register_backend("counting", f"{__name__}:CountingBackend")
    assert "counting" in backend_names()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with Dispatcher.load(tiny_bundle.path, backend="counting") as mine, Dispatcher.load(tiny_bundle.path) as ort:
        np.testing.assert_array_equal(mine(x).logits, ort(x).logits)
    assert CountingBackend.gate_runs == 1


def test_unknown_backends_and_targets_are_errors(tiny_bundle):
    with pytest.raises(DsnetError, match="unknown backend 'nope' \\(one of ort, trt"):
        Dispatcher.load(tiny_bundle.path, backend="nope")
    with pytest.raises(ValueError, match="module:Class"):
        register_backend("bad", "no_colon_here")


def test_the_onnx_runtime_backend_does_not_import_tensorrt_code(tiny_bundle):
    code = (f"import sys; from dsnet_export.runtime import Dispatcher; Dispatcher.load({str(tiny_bundle.path)!r}); "
            f"assert not [m for m in sys.modules if m.startswith('dsnet_export.trt')], 'trt imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
