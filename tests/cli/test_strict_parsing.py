"""Property tests: whatever bytes a checkpoint holds and however a manifest's arch or a budget file is broken,
the only outcome besides success is the one user-error type, naming the field."""

from __future__ import annotations

import copy
import io
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsnet_export import BundleError, CheckpointError
from dsnet_export.arch import ArchSpec
from dsnet_export.runtime.budget import parse_budget
from dsnet_export.runtime.manifest import MANIFEST_NAME, Manifest, parse_manifest

# DSNET_HYPOTHESIS_EXAMPLES=5000 for a longer hunt than the quick default.
SETTINGS = settings(max_examples=int(os.environ.get("DSNET_HYPOTHESIS_EXAMPLES", "120")), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10)


# -- checkpoints -----------------------------------------------------------------------------------------------
def _safetensors(header: dict, tail: bytes) -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + tail


def _zip(name: str, payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, payload)
    return buffer.getvalue()


TENSOR = st.fixed_dictionaries({"dtype": st.sampled_from(["F32", "F16", "I64", "BOOL", "X"]),
                                "shape": st.lists(st.integers(0, 4), max_size=3),
                                "data_offsets": st.lists(st.integers(0, 64), min_size=2, max_size=2)})
CHECKPOINT_BYTES = st.one_of(
    st.binary(max_size=1024),
    st.builds(lambda prefix, rest: prefix + rest,
              st.sampled_from([b"PK\x03\x04", b"\x80\x02", b"\x80\x04", b"\x89PNG\r\n\x1a\n", b"{", b"\xef\xbb\xbf["]),
              st.binary(max_size=512)),
    st.builds(_safetensors, st.dictionaries(st.text(max_size=4), TENSOR, max_size=3), st.binary(max_size=128)),
    st.builds(_safetensors, st.fixed_dictionaries({"__metadata__": st.dictionaries(
        st.sampled_from(["format", "arch_spec"]), st.text(max_size=30), max_size=2)}), st.binary(max_size=16)),
    st.builds(_zip, st.sampled_from(["archive/data.pkl", "data.pkl", "x.npy"]), st.binary(max_size=256)),
)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@SETTINGS
@given(data=CHECKPOINT_BYTES)
def test_any_bytes_are_a_checkpoint_or_a_checkpoint_error(scratch, data):
    from dsnet_export import load_supernet

    path = scratch / "model.pth.tar"
    path.write_bytes(data)
    start = time.perf_counter()
    try:
        load_supernet(path)
    except CheckpointError as exc:
        assert "weights_only" not in str(exc)
    assert time.perf_counter() - start < 20


# -- manifest arch -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def manifest_data(tiny_bundle):
    return json.loads((tiny_bundle.path / MANIFEST_NAME).read_text())


def _mutate(draw, arch: dict) -> tuple[dict, str]:
    """Drop a key or replace a value somewhere inside ``arch``; the mutated copy and the path touched."""
    arch = copy.deepcopy(arch)
    node, path = arch, "arch"
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = draw(st.sampled_from(keys))
        child = node[key]
        label = f"{path}.{key}" if isinstance(node, dict) else f"{path}[{key}]"
        if isinstance(child, (dict, list)) and child and draw(st.booleans()):
            node, path = child, label
            continue
        if isinstance(node, dict) and draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(JSON)
        return arch, label


@SETTINGS
@given(data=st.data())
def test_a_mutated_manifest_arch_parses_or_is_a_bundle_error(manifest_data, data):
    mutated = copy.deepcopy(manifest_data)
    for _ in range(data.draw(st.integers(1, 3))):
        mutated["arch"], _path = _mutate(data.draw, mutated["arch"])
    try:
        manifest = parse_manifest(mutated, "m.json")
    except BundleError as exc:
        assert str(exc).startswith("m.json: ")
        return
    assert isinstance(manifest, Manifest)  # accepted: then what the runtime reads from it is there
    spec = ArchSpec.from_dict(manifest.arch)
    assert int(manifest.arch["num_classes"]) == spec.num_classes and spec.num_routes == len(manifest.gate.routes)


@SETTINGS
@given(data=st.data())
def test_dropping_a_required_arch_field_is_named(manifest_data, data):
    arch = manifest_data["arch"]
    section = data.draw(st.sampled_from(["", "stem", "gate", "stages"]))
    required = {"": ["name", "stem", "stages", "gate", "num_classes"], "stem": ["channels"],
                "gate": ["stage", "routes"], "stages": ["channels", "layers"]}[section]
    key = data.draw(st.sampled_from(required))
    mutated = copy.deepcopy(manifest_data)
    target = mutated["arch"] if not section else (
        mutated["arch"]["stages"][data.draw(st.integers(0, len(arch["stages"]) - 1))] if section == "stages"
        else mutated["arch"][section])
    del target[key]
    with pytest.raises(BundleError, match=rf"\b{key}: missing field"):
        parse_manifest(mutated, "m.json")


# -- budget files ------------------------------------------------------------------------------------------------
VALID_BUDGET = {"version": 1, "manifest_sha256": "ab" * 32, "target_macs": 1_000_000, "achieved_macs": 9.5e5,
                "unbiased_macs": 1.2e6, "bias": [0.0, -0.5, -1.0, -1.5], "histogram": [3, 2, 1, 0], "samples": 6,
                "data": "val/"}


def test_the_valid_budget_parses():
    assert parse_budget(VALID_BUDGET).bias == [0.0, -0.5, -1.0, -1.5]


@SETTINGS
@given(value=JSON)
def test_any_json_value_is_a_budget_or_a_bundle_error(value):
    try:
        parse_budget(value, "b.json")
    except BundleError as exc:
        assert str(exc).startswith("b.json: ")


@SETTINGS
@given(key=st.sampled_from(sorted(VALID_BUDGET)), value=JSON, drop=st.booleans())
def test_a_broken_budget_field_is_named(key, value, drop):
    data = dict(VALID_BUDGET)
    if drop:
        del data[key]
    else:
        data[key] = value
    try:
        budget = parse_budget(data, "b.json")
    except BundleError as exc:
        assert key in str(exc)
        return
    assert not drop and len(budget.bias) == len(budget.histogram)  # a replacement that happens to be valid


@SETTINGS
@given(text=st.one_of(st.text(max_size=200), JSON.map(json.dumps)))
def test_any_budget_file_text_is_a_bundle_error(scratch, text, tiny_bundle):
    from dsnet_export.runtime import load_bundle
    from dsnet_export.runtime.budget import load_budget

    path = scratch / "budget.json"
    path.write_text(text)
    with pytest.raises(BundleError):
        load_budget(path, load_bundle(tiny_bundle.path, verify=False))
