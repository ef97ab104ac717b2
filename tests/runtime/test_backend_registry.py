"""Backends are chosen by name and imported only when chosen; each takes its own options object."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from dsnet_export import DsnetError
from dsnet_export.runtime import Dispatcher, load_bundle
from dsnet_export.runtime.backends import (
    NoOptions,
    OptionsTypeError,
    backend_class,
    backend_names,
    make_backend,
    options_class,
    register_backend,
)
from dsnet_export.runtime.backends.ort import OrtBackend, OrtOptions


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
        np.testing.assert_allclose(mine(x).logits, ort(x).logits, atol=0)
    assert CountingBackend.gate_runs == 1


def test_unknown_backends_and_targets_are_errors(tiny_bundle):
    with pytest.raises(DsnetError, match="unknown backend 'nope' \\(one of ort, trt"):
        Dispatcher.load(tiny_bundle.path, backend="nope")
    with pytest.raises(ValueError, match="module:Class"):
        register_backend("bad", "no_colon_here")
    with pytest.raises(TypeError, match="registered name .* or a constructed Backend, got the class OrtBackend"):
        Dispatcher.load(tiny_bundle.path, OrtBackend)  # the class, not an instance


def test_the_registry_knows_each_backends_options_class():
    from dsnet_export.runtime.backends.trt import TrtOptions

    assert options_class("ort") is OrtOptions and options_class("trt") is TrtOptions
    assert OrtOptions() == OrtOptions(providers=None, threads=None, share_weights=True, shared_pool=False)
    assert OrtOptions(providers=["cuda", "cpu"]).providers == ("cuda", "cpu")  # frozen, so hashable
    hash(OrtOptions(providers=["cuda"]))
    with pytest.raises(AttributeError):
        OrtOptions().threads = 2  # frozen
    assert TrtOptions() == TrtOptions()
    with pytest.raises(DsnetError, match="unknown backend"):
        options_class("nope")


def test_options_of_the_wrong_type_name_both(tiny_bundle):
    """Refused before any engine is made, as a DsnetError and a TypeError naming the backend, what it takes
    and what it got."""
    from dsnet_export.runtime.backends.trt import TrtOptions

    cases = [(TrtOptions(), "'ort' backend \\(OrtBackend\\) takes OrtOptions .* got TrtOptions"),
             ({"threads": 2}, "takes OrtOptions .* got dict"),
             (NoOptions(), "takes OrtOptions .* got NoOptions")]
    for options, message in cases:
        with pytest.raises(OptionsTypeError, match=message) as caught:
            Dispatcher.load(tiny_bundle.path, "ort", options)
        assert isinstance(caught.value, DsnetError) and isinstance(caught.value, TypeError)
    bundle = load_bundle(tiny_bundle.path)
    with pytest.raises(OptionsTypeError, match="takes OrtOptions"):
        OrtBackend(bundle, TrtOptions())  # the constructor checks too
    with pytest.raises(OptionsTypeError, match="takes OrtOptions"):
        make_backend("ort", bundle, TrtOptions())


def test_the_onnx_runtime_flags_left_dispatcher_load(tiny_bundle):
    """providers, threads, share_weights, shared_pool and device_path are the ORT backend's, not load's."""
    for flag, value in [("providers", "cpu"), ("threads", 1), ("share_weights", False), ("shared_pool", True),
                        ("device_path", True)]:
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{flag}'"):
            Dispatcher.load(tiny_bundle.path, **{flag: value})


def test_options_are_given_to_the_chosen_backend(tiny_bundle):
    with Dispatcher.load(tiny_bundle.path, "ort", OrtOptions(threads=1, share_weights=False), verify=False) as d:
        assert d.backend.options == OrtOptions(threads=1, share_weights=False)
        assert not d.shared_weights
    with Dispatcher.load(tiny_bundle.path) as d:
        assert d.backend.options == OrtOptions() and d.shared_weights


def test_a_constructed_backend_is_handed_to_the_dispatcher(tiny_bundle, mixed_batch, tmp_path):
    x = mixed_batch[0][:6]
    with Dispatcher.load(tiny_bundle.path) as ref:
        expected = ref(x).logits
    bundle = load_bundle(tiny_bundle.path)
    backend = OrtBackend(bundle, OrtOptions(threads=1))
    with Dispatcher.load(tiny_bundle.path, backend, lazy=True) as mine:
        assert mine.backend is backend
        np.testing.assert_allclose(mine(x).logits, expected, atol=1e-6)
    with pytest.raises(DsnetError, match="closed"):
        backend.run_gate(x)  # the dispatcher took it over and closed it

    other = OrtBackend(bundle)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle.path, copy)
    try:
        with pytest.raises(OptionsTypeError, match="options= is for a backend chosen by name"):
            Dispatcher.load(tiny_bundle.path, other, OrtOptions())  # it brings its own options
        with pytest.raises(DsnetError, match="runs the bundle at"):
            Dispatcher.load(copy, other)  # and must run the bundle loaded
        with Dispatcher.load(tiny_bundle.path, other) as d:  # a refused call left it usable
            np.testing.assert_allclose(d(x).logits, expected, atol=1e-6)
    finally:
        other.close()


def test_choosing_onnx_runtime_never_imports_tensorrt_code(tiny_bundle):
    code = ("import sys\n"
            "from dsnet_export.runtime import Dispatcher\n"
            "from dsnet_export.runtime.backends import options_class\n"
            "from dsnet_export.runtime.backends.ort import OrtOptions\n"
            "assert options_class('ort') is OrtOptions\n"
            f"Dispatcher.load({str(tiny_bundle.path)!r}).close()\n"
            f"Dispatcher.load({str(tiny_bundle.path)!r}, 'ort', OrtOptions(threads=1)).close()\n"
            "trt = [m for m in sys.modules if m.startswith(('dsnet_export.trt', 'dsnet_export.runtime.backends.trt'))\n"
            "       or m.split('.')[0] in ('tensorrt', 'cuda')]\n"
            "assert not trt, f'TensorRT code imported: {trt}'\n"
            "assert 'dsnet_export.runtime.backends.ort' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
