"""load_bundle rejects every malformed or tampered bundle with an error naming file and field."""

import json
import os
import shutil
import subprocess
import sys

import onnx
import pytest

from dsnet_export import BundleError
from dsnet_export.runtime import load_bundle


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    """A private copy of the tiny bundle to damage."""
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle.path, copy)
    return copy


def _edit_manifest(bundle, change):
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_valid_bundle_loads(bundle):
    assert load_bundle(bundle).manifest.name == "tiny"


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(schema_version=2), "schema_version: unsupported version 2"),
    (lambda d: d.pop("schema_version"), "unsupported version None"),
    (lambda d: d.pop("gate"), "gate: missing field"),
    (lambda d: d["routes"][1].pop("macs"), r"routes\[1\].macs: missing field"),
    (lambda d: d.update(surprise=1), "unknown field.*surprise"),
    (lambda d: d["routes"][0].update(color="red"), r"routes\[0\]: unknown field.*color"),
    (lambda d: d["routes"][2].update(macs="lots"), r"routes\[2\].macs: expected an integer"),
    (lambda d: d["routes"][2].update(macs=True), r"routes\[2\].macs: expected an integer"),
    (lambda d: d["input"].update(mean="0.5"), r"input.mean: expected a list"),
    (lambda d: d["routes"][0].update(kind="sometimes"), r"routes\[0\].kind: unknown kind"),
    (lambda d: d["routes"][0].update(index=3), r"routes\[0\].index"),
    (lambda d: d["gate"].update(routes=[1, 0, 2, 3]), r"gate.routes\[0\]"),
    (lambda d: d["files"]["gate.onnx"].update(sha256="xyz"), "64-digit"),
])
def test_manifest_schema_errors_name_the_field(bundle, change, message):
    _edit_manifest(bundle, change)
    with pytest.raises(BundleError, match=message) as err:
        load_bundle(bundle)
    assert "manifest.json" in str(err.value)


def test_not_json(bundle):
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle)


def test_missing_manifest_and_missing_dir(bundle, tmp_path):
    with pytest.raises(BundleError, match="not a bundle directory"):
        load_bundle(tmp_path / "nowhere")
    (bundle / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json: missing"):
        load_bundle(bundle)


def test_changed_file_fails_the_hash(bundle):
    path = bundle / "route_1.onnx"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # inside the engine's recorded identity
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"route_1.onnx: sha256 .*files\['route_1.onnx'\].sha256"):
        load_bundle(bundle)
    with pytest.raises(BundleError, match="route_1.onnx: its recorded identity"):
        load_bundle(bundle, verify=False)


def test_changed_weights_fail_the_hash_only(bundle):
    path = bundle / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # a tensor's last byte
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"weights.safetensors: sha256 .*files\['weights.safetensors'\].sha256"):
        load_bundle(bundle)
    load_bundle(bundle, verify=False)  # sizes still match: only hashing notices


def test_size_mismatch(bundle):
    with (bundle / "weights.safetensors").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"weights.safetensors: size .*files\['weights.safetensors'\].size"):
        load_bundle(bundle, verify=False)


def test_missing_file(bundle):
    (bundle / "route_2.onnx").unlink()
    with pytest.raises(BundleError, match="route_2.onnx: missing"):
        load_bundle(bundle)


@pytest.mark.parametrize("name", ["../outside.onnx", "/etc/passwd", "sub/../../x.onnx"])
def test_names_that_leave_the_bundle(bundle, name):
    def change(d):
        d["files"][name] = d["files"].pop("route_0.onnx")
        d["routes"][0]["file"] = name

    _edit_manifest(bundle, change)
    with pytest.raises(BundleError, match="leaves the bundle"):
        load_bundle(bundle)


def test_link_pointing_outside(bundle, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(bundle / "route_0.onnx", outside)
    (bundle / "route_0.onnx").unlink()
    os.symlink(outside, bundle / "route_0.onnx")
    with pytest.raises(BundleError, match="link that points outside"):
        load_bundle(bundle)


def test_external_data_must_stay_in_the_weights_file(bundle):
    path = bundle / "route_0.onnx"
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = "../../secrets.bin"
                break
        else:
            continue
        break
    onnx.save_model(model, str(path))

    def rehash(d):
        import hashlib
        d["files"]["route_0.onnx"] = {"size": path.stat().st_size,
                                      "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}

    _edit_manifest(bundle, rehash)
    with pytest.raises(BundleError, match="reads external data from '../../secrets.bin'"):
        load_bundle(bundle)


def test_runtime_imports_no_torch(tiny_bundle):
    code = ("import sys; from dsnet_export.runtime import load_bundle; "
            f"load_bundle({str(tiny_bundle.path)!r}); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
