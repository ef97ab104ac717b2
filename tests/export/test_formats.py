"""export-format --format litert: every engine converted from the bundle's own weights, checked before it is
written, recorded with its hash, and run by the LiteRT backend to ONNX Runtime's numbers.

Conversions run as the command, in a subprocess: litert-torch imports JAX, whose threads make every later
``os.fork`` in this test process (Ray, DataLoader workers) a deadlock risk.  Skipped with a reason without
litert-torch / ai-edge-litert; CI installs both (extras litert, litert-export)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from dsnet_export.errors import BundleError
from dsnet_export.runtime import Dispatcher, load_bundle

if importlib.util.find_spec("litert_torch") is None or importlib.util.find_spec("ai_edge_litert") is None:
    pytest.skip("export-format --format litert needs litert-torch and ai-edge-litert", allow_module_level=True)

from dsnet_export.export import formats  # noqa: E402
from dsnet_export.export.formats import export_format  # noqa: E402  (imports no converter)
from dsnet_export.runtime.compare import ParityError  # noqa: E402

TOLERANCE = {"atol": 1e-4, "rtol": 1e-5}


def _export_format(path, *args) -> dict:
    """``export-format PATH --format litert ...`` as a user runs it; its JSON summary."""
    done = subprocess.run([sys.executable, "-m", "dsnet_export", "export-format", str(path), "--format", "litert",
                           *map(str, args), "--json", "-", "--quiet"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # the converter's own chatter stays off stdout


@pytest.fixture(scope="module")
def tiny_litert(tiny_bundle, tmp_path_factory):
    """The tiny bundle (gate routes, a forced uniform:4, a fixed largest) with LiteRT engines up to batch 4."""
    path = tmp_path_factory.mktemp("litert") / "tiny"
    shutil.copytree(tiny_bundle.path, path)
    return path, _export_format(path, "--format-max-batch", 4)


def _every_route_equals_onnx_runtime(bundle_dir, x, bias=None):
    with Dispatcher.load(bundle_dir) as ort, Dispatcher.load(bundle_dir, "litert") as lite:
        assert not lite.shared_weights
        np.testing.assert_allclose(lite.gate_logits(x), ort.gate_logits(x), **TOLERANCE)
        for route in ort.routes:
            np.testing.assert_allclose(lite.run(x, route.name).logits, ort.run(x, route.name).logits, **TOLERANCE)
        if bias is not None:
            ort.gate_bias = lite.gate_bias = bias
        a, b = ort(x), lite(x)
        np.testing.assert_array_equal(b.routes, a.routes)
        np.testing.assert_allclose(b.logits, a.logits, **TOLERANCE)
        return a


@pytest.mark.parametrize("n", [1, 3, 8])
def test_tiny_bundle_every_engine_and_dynamic_routing(tiny_litert, mixed_batch, n):
    """Batch 8 is above the engines' max_batch 4: the dispatcher splits it."""
    x, bias = mixed_batch
    a = _every_route_equals_onnx_runtime(tiny_litert[0], x[:n], bias)
    if n == 8:
        assert len(set(a.routes.tolist())) > 1


def test_the_conversion_is_recorded_and_checked(tiny_litert):
    path, summary = tiny_litert
    bundle = load_bundle(path, verify=True)
    m = bundle.manifest
    converted = m.format_engines("litert")
    assert converted.max_batch == summary["max_batch"] == 4 and not converted.shares_weights
    assert converted.converter == summary["converter"] and converted.converter.startswith("litert-torch ")
    assert set(converted.engines) == {m.gate.file, *(r.file for r in m.routes)} == set(summary["files"])
    for engine, file in converted.engines.items():
        assert file.startswith("litert/")
        assert m.files[file].size == summary["sizes"][engine] == (path / file).stat().st_size
    assert max(summary["max_abs_diff"].values()) < 1e-4


def test_a_tampered_converted_file_is_refused(tiny_litert, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(tiny_litert[0], copy)
    target = copy / "litert" / "route_0.tflite"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="route_0.tflite"):
        Dispatcher.load(copy, "litert")


def test_a_bundle_without_litert_engines_names_the_command(tiny_bundle):
    with pytest.raises(BundleError, match="export-format .* --format litert"):
        Dispatcher.load(tiny_bundle.path, "litert")


def test_a_parity_failure_writes_nothing(tiny_bundle, tiny_litert, tmp_path, monkeypatch):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.path, copy)
    before = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    _, run, version = formats.CONVERTERS["litert"]
    m = load_bundle(copy).manifest
    done = load_bundle(tiny_litert[0]).manifest.format_engines("litert").engines
    order = iter([m.gate.file, *(r.file for r in m.routes)])  # the order export_format converts in

    def reuse(module, example, max_batch):  # the real converted engines: converting again takes a minute
        return (tiny_litert[0] / done[next(order)]).read_bytes()

    monkeypatch.setitem(formats.CONVERTERS, "litert", (reuse, lambda data, x: [o + 1 for o in run(data, x)],
                                                       version))
    assert "litert_torch" not in sys.modules  # nothing below converts: the engines are reused
    with pytest.raises(ParityError, match="litert engines vs the torch supernet"):
        export_format(copy, "litert", max_batch=2, progress=False)
    after = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    assert after == before


def test_digits_bundle(tmp_path_factory):
    """The embedded default model on real digits test images, converted with the command a user runs."""
    from dsnet_export.cli import main
    from dsnet_export.datasets import load_digits
    from dsnet_export.export import build_bundle
    from dsnet_export.imaging import Preprocessing

    bundle = build_bundle(out=tmp_path_factory.mktemp("digits") / "bundle", progress=False).path
    out = tmp_path_factory.mktemp("digits_json") / "eval.json"
    summary = _export_format(bundle)
    assert summary["format"] == "litert" and max(summary["max_abs_diff"].values()) < 1e-4
    data = load_digits(Preprocessing.from_manifest(load_bundle(bundle).manifest.input))
    x, _ = data.normalized("test")
    _every_route_equals_onnx_runtime(bundle, np.ascontiguousarray(x[:16], np.float32))
    assert main(["verify", str(bundle), "--backend", "litert", "--quiet"]) == 0
    assert main(["eval", str(bundle), "--backend", "litert", "--dataset", "digits", "--quiet", "--json",
                 str(out)]) == 0


def test_oracle_bundle(oracle_bundle, oracle, tmp_path):
    path = tmp_path / "oracle"
    shutil.copytree(oracle_bundle.path, path)
    _export_format(path, "--format-max-batch", 8)
    x = np.load(oracle / "oracle_inputs.npz")
    _every_route_equals_onnx_runtime(path, x[x.files[0]][:4].astype(np.float32))
