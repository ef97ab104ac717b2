"""Hostile checkpoints: absurd embedded specs, malformed safetensors headers, damaged torch files.

Whatever a file holds, ``load_supernet`` returns a model whose state is what the file says or raises
``CheckpointError``; nothing the file declares is allocated before it is checked against the file itself."""

from __future__ import annotations

import copy
import io
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dsnet_export import CheckpointError, load_supernet
from dsnet_export.arch import ArchSpec, get_arch
from dsnet_export.cli import main

ROOT = Path(__file__).resolve().parents[2]
# DSNET_HYPOTHESIS_EXAMPLES=5000 for a longer hunt than the default.
SETTINGS = settings(max_examples=int(os.environ.get("DSNET_HYPOTHESIS_EXAMPLES", "200")), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


# -- the valid file, taken apart -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Base:
    raw: bytes
    header: dict
    data: bytes
    spec: dict
    state: dict

    def with_spec(self, mutate=None, text: str | None = None) -> bytes:
        spec = copy.deepcopy(self.spec)
        if mutate is not None:
            mutate(spec)
        header = copy.deepcopy(self.header)
        header["__metadata__"]["arch_spec"] = text if text is not None else json.dumps(spec)
        return join(header, self.data)

    def with_header(self, mutate) -> bytes:
        header = copy.deepcopy(self.header)
        mutate(header)
        return join(header, self.data)


def nth_tensor(header: dict, index: int) -> str:
    """The name of the ``index``-th tensor in file order."""
    names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    return names[index]


def split(raw: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def join(header: dict | str, data: bytes, length: int | None = None) -> bytes:
    text = (header if isinstance(header, str) else json.dumps(header)).encode()
    return (len(text) if length is None else length).to_bytes(8, "little") + text + data


def rebuild(tensors: dict[str, tuple[str, list[int], bytes]], metadata: dict) -> bytes:
    """A well-formed safetensors file from (dtype, shape, bytes) entries."""
    header, blob = {"__metadata__": metadata}, b""
    for name, (dtype, shape, payload) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(payload)]}
        blob += payload
    return join(header, blob)


@pytest.fixture(scope="module")
def base(tiny_checkpoint) -> Base:
    from safetensors.torch import load_file

    raw = Path(tiny_checkpoint).read_bytes()
    header, data = split(raw)
    return Base(raw, header, data, json.loads(header["__metadata__"]["arch_spec"]), load_file(tiny_checkpoint))


def torch_bytes(obj, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def tensors_of(b: Base) -> dict[str, tuple[str, list[int], bytes]]:
    """The base file's entries as (dtype, shape, bytes), in file order."""
    out = {}
    for name in sorted((k for k in b.header if k != "__metadata__"), key=lambda k: b.header[k]["data_offsets"][0]):
        entry = b.header[name]
        start, end = entry["data_offsets"]
        out[name] = (entry["dtype"], entry["shape"], b.data[start:end])
    return out


def _set(path: str, value):
    """A spec mutation: ``path`` like 'stages.0.layers' set to ``value``."""
    def mutate(spec):
        *parents, last = path.split(".")
        node = spec
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return mutate


def _huge_stage(spec):
    spec["stem"]["channels"] = [8, 16384]
    spec["stages"] = [dict(spec["stages"][0], channels=[16, 16384], layers=64)] * 4
    spec["gate"] = {"stage": 0, "routes": [0, 1]}


def _in_limits_but_big(spec):
    """Passes every spec limit (about 0.4e9 parameters), but this file holds 30k values."""
    spec["stages"][-1]["channels"] = [64, 80, 96, 112, 16384]
    spec["num_classes"] = 20000


def _missing_tensor(b: Base) -> bytes:
    tensors = tensors_of(b)
    del tensors["classifier.bias"]
    return rebuild(tensors, b.header["__metadata__"])


def _extra_tensor(b: Base) -> bytes:
    tensors = tensors_of(b)
    tensors["blocks.9.extra"] = ("F32", [1], b"\0\0\0\0")
    return rebuild(tensors, b.header["__metadata__"])


def _retype(dtype: str):
    """Every float tensor re-declared as ``dtype`` (same byte size: the file stays well-formed)."""
    def build(b: Base) -> bytes:
        tensors = {k: (dtype if v[0] == "F32" else v[0], v[1], v[2]) for k, v in tensors_of(b).items()}
        return rebuild(tensors, b.header["__metadata__"])
    return build


def _fill(value: float):
    def build(b: Base) -> bytes:
        tensors = {k: (v[0], v[1], struct.pack(f"<{len(v[2]) // 4}f", *[value] * (len(v[2]) // 4)))
                   if v[0] == "F32" else v for k, v in tensors_of(b).items()}
        return rebuild(tensors, b.header["__metadata__"])
    return build


def _offsets(fn):
    def mutate(header):
        entry = header[nth_tensor(header, 1)]
        entry["data_offsets"] = fn(entry["data_offsets"])
    return mutate


def _overlap(header):
    first, second = (header[nth_tensor(header, i)] for i in (0, 1))
    second["data_offsets"] = [first["data_offsets"][0], first["data_offsets"][0] + second["data_offsets"][1]
                              - second["data_offsets"][0]]


def _shape(fn):
    def mutate(header):
        entry = header["conv_stem.weight"]
        entry["shape"] = fn(entry["shape"])
    return mutate


def _state_with(b: Base, **changes):
    state = {k: v.clone() for k, v in b.state.items()}
    state.update(changes)
    return state


def _legacy_huge_storage(b: Base) -> bytes:
    """A legacy (non-zip) torch file whose storage claims 2^31 - 1 float64 elements (16 GB)."""
    data = torch_bytes({"w": torch.zeros(123457, dtype=torch.float64)}, legacy=True)
    needle = b"J" + struct.pack("<i", 123457)
    return data.replace(needle, b"J" + struct.pack("<i", 2 ** 31 - 1), 1)[:4000]


def _zip_huge_storage(b: Base) -> bytes:
    data = torch_bytes({"w": torch.zeros(123457, dtype=torch.float64)})
    needle = b"J" + struct.pack("<i", 123457)
    return data.replace(needle, b"J" + struct.pack("<i", 2 ** 31 - 1), 1)


DEEP = "[" * 100_000 + "]" * 100_000
ERR = CheckpointError
# (id, builder(base) -> bytes, file suffix, None for "loads" or a pattern the CheckpointError must match)
CRAFTED = [
    # -- absurd or broken embedded specs (the tensors are the valid tiny ones) --
    ("classes-1e9", lambda b: b.with_spec(_set("num_classes", 10 ** 9)), "num_classes must be at most 100000"),
    ("classes-1e5-in-limits", lambda b: b.with_spec(_set("num_classes", 100_000)), r"classifier\.\* tensors hold"),
    ("classes-11", lambda b: b.with_spec(_set("num_classes", 11)), r"first mismatch: classifier\.weight.*num_classes"),
    ("classes-0", lambda b: b.with_spec(_set("num_classes", 0)), "num_classes must be a positive"),
    ("classes-negative", lambda b: b.with_spec(_set("num_classes", -5)), "num_classes must be a positive"),
    ("classes-5000-digits", lambda b: b.with_spec(text=json.dumps(b.spec).replace('"num_classes": 10',
                                                                                  '"num_classes": ' + "9" * 5000)),
     "not JSON.*integer string conversion"),
    ("classes-1e400", lambda b: b.with_spec(text=json.dumps(b.spec).replace('"num_classes": 10',
                                                                            '"num_classes": 1e400')),
     "num_classes: expected an integer"),
    ("classes-string", lambda b: b.with_spec(_set("num_classes", "10")), "num_classes: expected an integer"),
    ("classes-bool", lambda b: b.with_spec(_set("num_classes", True)), "num_classes: expected an integer"),
    ("stem-channels-1e6", lambda b: b.with_spec(_set("stem.channels", [10 ** 6])), r"stem: channels must be at most"),
    ("stage-channels-1e6", lambda b: b.with_spec(_set("stages.0.channels", [16, 10 ** 6])),
     r"stages\[0\]: channels must be at most"),
    ("stage-channels-16384", lambda b: b.with_spec(_set("stages.0.channels", [16, 16384])),
     r"first mismatch: the spec's stages\[0\]"),
    ("channels-65-choices", lambda b: b.with_spec(_set("stem.channels", list(range(1, 66)))), "65 width choices"),
    ("channels-decreasing", lambda b: b.with_spec(_set("stem.channels", [12, 8])), "strictly increasing"),
    ("channels-nested", lambda b: b.with_spec(_set("stem.channels", [[8], [12]])), r"stem\.channels\[0\]"),
    ("layers-1e4", lambda b: b.with_spec(_set("stages.0.layers", 10 ** 4)), r"layers must be at most 64"),
    ("layers-64-in-limits", lambda b: b.with_spec(_set("stages.0.layers", 64)), "does not fit|first mismatch"),
    ("layers-1e30", lambda b: b.with_spec(_set("stages.0.layers", 10 ** 30)), r"layers must be at most 64, got an"),
    ("stages-33", lambda b: b.with_spec(_set("stages", [b.spec["stages"][0]] * 33)), "33 stages; at most 32"),
    ("blocks-over-256", lambda b: b.with_spec(_set("stages", [dict(b.spec["stages"][0], layers=64)] * 5)),
     "320 layers in all"),
    ("params-over-2e9", lambda b: b.with_spec(_huge_stage), "parameters; at most 2,000,000,000"),
    ("params-in-limits-big", lambda b: b.with_spec(_in_limits_but_big), "the file holds 30,"),
    ("kernel-1e6", lambda b: b.with_spec(_set("stages.1.kernel", 10 ** 6 + 1)), r"kernel must be at most 15"),
    ("kernel-even", lambda b: b.with_spec(_set("stem.kernel", 4)), "kernel must be odd"),
    ("stride-1e6", lambda b: b.with_spec(_set("stem.stride", 10 ** 6)), r"stride must be an integer in 1\.\.8"),
    ("stride-0", lambda b: b.with_spec(_set("stages.0.stride", 0)), "stride must be an integer"),
    ("input-height-1e6", lambda b: b.with_spec(_set("input.height", 10 ** 6)), r"height must be in 8\.\.4096"),
    ("input-width-1e6", lambda b: b.with_spec(_set("input.width", 10 ** 6)), r"width must be in 8\.\.4096"),
    ("input-height-2", lambda b: b.with_spec(_set("input.height", 2)), r"height must be in 8\.\.4096"),
    ("input-channels-1e6", lambda b: b.with_spec(_set("input.channels", 10 ** 6)), "channels must be at most 64"),
    ("input-resize-1e9", lambda b: b.with_spec(_set("input.resize", 10 ** 9)), "resize must be null or"),
    ("mean-nan", lambda b: b.with_spec(text=json.dumps(b.spec).replace('"mean": [0.5', '"mean": [NaN')),
     "mean values must be finite"),
    ("std-infinity", lambda b: b.with_spec(text=json.dumps(b.spec).replace('"std": [0.25', '"std": [Infinity')),
     "std values must be positive"),
    ("bn-eps-zero", lambda b: b.with_spec(_set("bn_eps", 0.0)), "bn_eps must be a positive"),
    ("se-ratio-10", lambda b: b.with_spec(_set("stages.0.se_ratio", 10)), r"se_ratio must be in"),
    ("gate-stage-99", lambda b: b.with_spec(_set("gate.stage", 99)), "gate: stage must index"),
    ("gate-routes-1e9", lambda b: b.with_spec(_set("gate.routes", [0, 10 ** 9])), "routes must be choice indexes"),
    ("name-10k-chars", lambda b: b.with_spec(_set("name", "n" * 10_000)), "name must be at most 256"),
    ("block-unknown", lambda b: b.with_spec(_set("stages.0.block", "resnet")), "unknown block type"),
    ("unknown-field", lambda b: b.with_spec(_set("extra", 1)), r"unknown field\(s\) extra"),
    ("spec-deeply-nested", lambda b: b.with_spec(text=DEEP), "nested too deeply"),
    ("spec-deep-in-field", lambda b: b.with_spec(text=json.dumps(b.spec).replace('"layers": 1', '"layers": '
                                                                                 + DEEP[:20_000] + DEEP[-20_000:])),
     "nested too deeply|expected an integer"),
    ("spec-not-json", lambda b: b.with_spec(text="ds_mbnet_tiny"), "not JSON"),
    ("spec-null", lambda b: b.with_spec(text="null"), "expected an object"),
    ("spec-list", lambda b: b.with_spec(text="[]"), "expected an object"),
    ("spec-2mb", lambda b: b.with_spec(text=" " * 2_000_000 + "{}"), "characters; a spec is a few KB"),
    ("spec-other-arch", lambda b: b.with_spec(text=json.dumps(get_arch("ds_mbnet").to_dict())),
     "largest route alone has 7,675,940 parameters"),
    # -- malformed safetensors headers and data --
    ("header-longer-than-file", lambda b: join(b.header, b.data, length=len(b.raw) * 4), "truncated safetensors"),
    ("header-length-2^63", lambda b: join(b.header, b.data, length=2 ** 63), "not a PyTorch or safetensors"),
    ("header-not-json", lambda b: join("{" + "x" * 50, b.data), "not a readable safetensors"),
    ("header-deeply-nested", lambda b: join('{"a":' + DEEP + "}", b""), "not a readable safetensors"),
    ("header-metadata-number", lambda b: b.with_header(lambda h: h["__metadata__"].update(arch_spec=5)),
     "not a readable safetensors"),
    ("header-metadata-list", lambda b: b.with_header(lambda h: h.update(__metadata__=[1])),
     "not a readable safetensors"),
    ("header-tensor-not-object", lambda b: b.with_header(lambda h: h.update({"classifier.bias": 3})),
     "not a readable safetensors"),
    ("header-no-dtype", lambda b: b.with_header(lambda h: h["classifier.bias"].pop("dtype")),
     "not a readable safetensors"),
    ("dtype-unknown", lambda b: b.with_header(lambda h: h["classifier.bias"].update(dtype="X")),
     "not a readable safetensors"),
    ("dtype-f16-size-mismatch", lambda b: b.with_header(lambda h: h["classifier.bias"].update(dtype="F16")),
     "not a readable safetensors"),
    ("dtype-all-i32", _retype("I32"), "not floating point"),
    ("dtype-all-u32", _retype("U32"), "not floating point|not a readable"),
    ("dtype-all-f64", lambda b: rebuild({k: ("F64", v[1], v[2] * 2) if v[0] == "F32" else v
                                         for k, v in tensors_of(b).items()}, b.header["__metadata__"]), None),
    ("offsets-beyond-file", lambda b: b.with_header(_offsets(lambda o: [o[0], o[1] + 10 ** 6])),
     "not a readable safetensors"),
    ("offsets-negative", lambda b: b.with_header(_offsets(lambda o: [-4, o[1]])), "not a readable safetensors"),
    ("offsets-reversed", lambda b: b.with_header(_offsets(lambda o: [o[1], o[0]])), "not a readable safetensors"),
    ("offsets-2^70", lambda b: b.with_header(_offsets(lambda o: [2 ** 70, 2 ** 70 + 4])),
     "not a readable safetensors"),
    ("offsets-overlapping", lambda b: b.with_header(_overlap), "not a readable safetensors"),
    ("shape-transposed", lambda b: b.with_header(_shape(lambda s: [s[1], s[0], *s[2:]])),
     r"(?s)mis-shaped keys \(1\): conv_stem\.weight.*first mismatch: conv_stem\.weight"),
    ("shape-huge-times-zero", lambda b: b.with_header(_shape(lambda s: [0, 2 ** 62])),
     "not a readable safetensors|mis-shaped"),
    ("shape-1e30", lambda b: b.with_header(_shape(lambda s: [10 ** 30])), "not a readable safetensors"),
    ("shape-negative", lambda b: b.with_header(_shape(lambda s: [-1, *s[1:]])), "not a readable safetensors"),
    ("tensor-missing", _missing_tensor, r"missing keys \(1\): classifier\.bias"),
    ("tensor-extra", _extra_tensor, r"unexpected keys \(1\): blocks\.9\.extra"),
    ("data-truncated", lambda b: b.raw[:len(b.raw) - 100], "not a readable safetensors"),
    ("data-extra-bytes", lambda b: b.raw + b"\0" * 64, "not a readable safetensors"),
    ("weights-nan", _fill(float("nan")), None),
    ("weights-inf", _fill(float("inf")), None),
    # -- torch files --
    ("torch-legacy-huge-storage", _legacy_huge_storage, "not a readable torch checkpoint"),
    ("torch-zip-huge-storage", _zip_huge_storage, "not a readable torch checkpoint"),
    ("torch-int-keys", lambda b: torch_bytes({"state_dict": {1: torch.zeros(1)}, "arch": "ds_mbnet_tiny"}),
     "not a mapping of names to tensors"),
    ("torch-non-tensor-value", lambda b: torch_bytes({"state_dict": {"a": [1, 2]}}), "not a mapping of names"),
    ("torch-arch-int", lambda b: torch_bytes({"state_dict": b.state, "arch": 5}), "'arch' must be a string"),
    ("torch-state-list", lambda b: torch_bytes({"state_dict": [torch.zeros(1)]}), "not a mapping of names"),
    ("torch-declares-big-arch", lambda b: torch_bytes({"state_dict": b.state, "arch": "ds_mbnet"}),
     "largest route alone has 7,675,940 parameters, the file holds 30,"),
    ("torch-bare-unmatched", lambda b: torch_bytes(_state_with(b, **{"classifier.bias": torch.zeros(11)})),
     "match none of the registered"),
    ("torch-int-weights", lambda b: torch_bytes({"state_dict": _state_with(b, **{
        "classifier.weight": torch.zeros(10, 128, dtype=torch.int64)}), "arch": "ds_mbnet_tiny"}),
     r"not floating point keys \(1\): classifier\.weight \(int64\)"),
    ("torch-complex-weights", lambda b: torch_bytes({"state_dict": _state_with(b, **{
        "classifier.weight": torch.zeros(10, 128, dtype=torch.complex64)}), "arch": "ds_mbnet_tiny"}),
     "not floating point"),
    ("torch-sparse-weights", lambda b: torch_bytes({"state_dict": _state_with(b, **{
        "classifier.weight": torch.zeros(10, 128).to_sparse()}), "arch": "ds_mbnet_tiny"}),
     "cannot be copied|not a readable"),
    ("torch-nan-weights", lambda b: torch_bytes({"state_dict": _state_with(b, **{
        "classifier.weight": torch.full((10, 128), float("nan"))}), "arch": "ds_mbnet_tiny"}), None),
]


def test_at_least_forty_crafted_checkpoints():
    assert len(CRAFTED) >= 40 and len({name for name, *_ in CRAFTED}) == len(CRAFTED)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(("name", "build", "expect"), CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_checkpoint(tmp_path, base, name, build, expect):
    path = tmp_path / ("model.pth.tar" if name.startswith("torch") else "model.safetensors")
    path.write_bytes(build(base))
    if expect is not None:
        with pytest.raises(CheckpointError, match=expect) as err:
            load_supernet(path)
        assert len(str(err.value)) < 2000 and "Traceback" not in str(err.value)
        return
    model = load_supernet(path)
    _assert_state_is_the_files(model, path)


def _assert_state_is_the_files(model, path: Path) -> None:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, weights_only=True)["state_dict"]
    got = model.state_dict()
    assert set(got) == set(state)
    for key, value in state.items():
        assert torch.equal(got[key].isnan(), value.to(got[key].dtype).isnan()), key
        assert torch.equal(got[key].nan_to_num(), value.to(got[key].dtype).nan_to_num()), key


def test_the_first_mismatch_names_the_spec_field(tmp_path, base):
    path = tmp_path / "m.safetensors"
    path.write_bytes(base.with_spec(_set("stages.1.channels", [24, 40])))
    with pytest.raises(CheckpointError, match=r"first mismatch: blocks\.1\..*stages\[1\]"):
        load_supernet(path)


def test_a_file_with_nonfinite_weights_loads_as_it_is(tmp_path, base):
    path = tmp_path / "nan.safetensors"
    path.write_bytes(_fill(float("nan"))(base))
    assert load_supernet(path).classifier.weight.isnan().all()


# -- property tests --------------------------------------------------------------------------------------------
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.integers(0, 20), st.floats(),
    st.sampled_from([10 ** 9, 10 ** 6, 16384, 16385, 4096, 4097, 2 ** 63, -1, 0, 1e400, "__HUGE__", "__DEEP__"]),
    st.text(max_size=6), st.lists(st.integers(-3, 70000), max_size=6),
    st.recursive(st.integers(0, 3), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["channels", "layers", "x"]), inner, max_size=2), max_leaves=6))


def _render(value) -> str:
    """JSON text; the markers become an integer past Python's 4300-digit limit and 100k-deep nesting."""
    text = json.dumps(value)
    return text.replace('"__HUGE__"', "9" * 5000).replace('"__DEEP__"', DEEP)


def _mutate(draw, node):
    """Replace or drop one value somewhere inside ``node`` (a dict or list), in place."""
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, (dict, list)) and child and draw(st.booleans()):
            node = child
            continue
        if isinstance(node, dict) and draw(st.integers(0, 4)) == 0:
            del node[key]
        else:
            node[key] = draw(HOSTILE)
        return


def _load_or_typed_error(path: Path) -> None:
    try:
        model = load_supernet(path)
    except CheckpointError as exc:
        assert "weights_only" not in str(exc)
        event("CheckpointError")
        return
    event("loaded")
    _assert_state_is_the_files(model, path)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


BYTES = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda head, rest: head + rest, st.sampled_from([
        b"PK\x03\x04", b"\x80\x02", b"\x80\x05", b"\x10\x00\x00\x00\x00\x00\x00\x00{", b"\xff" * 8 + b"{"]),
        st.binary(max_size=1024)),
    st.builds(lambda n, text, rest: n.to_bytes(8, "little") + text.encode() + rest,
              st.integers(0, 2 ** 64 - 1), st.text(max_size=64).map(lambda t: "{" + t), st.binary(max_size=64)),
)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@SETTINGS
@given(data=BYTES, suffix=st.sampled_from([".safetensors", ".pth.tar", ".pth"]))
def test_arbitrary_bytes_load_or_raise_the_typed_error(scratch, data, suffix):
    path = scratch / f"any{suffix}"
    path.write_bytes(data)
    _load_or_typed_error(path)


@SETTINGS
@given(data=st.data())
def test_a_mutated_header_loads_what_the_file_says_or_raises_the_typed_error(scratch, base, data):
    header = copy.deepcopy(base.header)
    entry = data.draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
    target = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "entry", "name"]))
    if target == "entry":
        header[entry] = data.draw(HOSTILE)
    elif target == "name":
        header[data.draw(st.text(max_size=12))] = header.pop(entry)
    else:
        header[entry][target] = data.draw(st.one_of(HOSTILE, st.sampled_from(
            ["F16", "F64", "BF16", "I64", "I8", "U8", "BOOL", "F8_E4M3", "F4", "C64", "f32", ""])))
    path = scratch / "header.safetensors"
    path.write_bytes(join(_render(header), base.data))
    _load_or_typed_error(path)


@SETTINGS
@given(data=st.data())
def test_a_mutated_embedded_spec_loads_or_raises_the_typed_error(scratch, base, data):
    spec = copy.deepcopy(base.spec)
    for _ in range(data.draw(st.integers(1, 3))):
        _mutate(data.draw, spec)
    path = scratch / "spec.safetensors"
    path.write_bytes(base.with_spec(text=_render(spec)))
    _load_or_typed_error(path)


# -- a memory bound ---------------------------------------------------------------------------------------------
MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from dsnet_export import CheckpointError, load_supernet

    paths = [Path(p) for p in sys.argv[2:]]
    load_supernet(sys.argv[1])  # warm up: imports, allocator, one real model
    def status(field):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    budget = status("VmSize") + (512 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (budget, budget))
    rss_before = status("VmRSS")
    results = {}
    for path in paths:
        try:
            load_supernet(path)
            results[path.name] = "loaded"
        except CheckpointError:
            results[path.name] = "typed"
        except BaseException as exc:  # noqa: BLE001 - the point of the probe
            results[path.name] = f"untyped {type(exc).__name__}: {str(exc)[:200]}"
    results["peak_growth_mb"] = (status("VmHWM") - rss_before) / 2 ** 20
    print(json.dumps(results))
""")

ABSURD = {  # each spec describes gigabytes of weights; the file holds the tiny model's 120 KB
    "classes-1e9": _set("num_classes", 10 ** 9),
    "classes-1e5": _set("num_classes", 100_000),
    "channels-1e6": _set("stages.3.channels", [64, 80, 96, 112, 10 ** 6]),
    "channels-16384": _in_limits_but_big,
    "layers-1e4": _set("stages.2.layers", 10 ** 4),
    "input-1e6-px": _set("input.height", 10 ** 6),
    "params-over-2e9": _huge_stage,
}


def test_absurd_specs_fail_fast_without_allocating(tmp_path, base, tiny_checkpoint):
    paths = []
    for name, mutate in ABSURD.items():
        paths.append(tmp_path / f"{name}.safetensors")
        paths[-1].write_bytes(base.with_spec(mutate))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(tiny_checkpoint), *map(str, paths)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert {k: v for k, v in results.items() if k != "peak_growth_mb"} == {f"{n}.safetensors": "typed"
                                                                           for n in ABSURD}
    assert results["peak_growth_mb"] < 64


# -- the command line ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["classes-1e9", "header-longer-than-file", "offsets-beyond-file",
                                  "spec-deeply-nested"])
def test_build_names_a_hostile_checkpoint_in_one_error_line(tmp_path, base, capsys, name):
    build = next(b for n, b, _ in CRAFTED if n == name)
    path = tmp_path / "bad.safetensors"
    path.write_bytes(build(base))
    assert main(["build", "--checkpoint", str(path), "--out", str(tmp_path / "out")]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_build_in_a_fresh_process_prints_one_error_line(tmp_path, base):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(base.with_spec(_set("input.height", 10 ** 6)))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "dsnet_export", "build", "--checkpoint", str(path),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "height must be in 8..4096" in lines[0], done.stderr


def test_spec_limits_leave_every_registered_architecture_valid():
    from dsnet_export.arch import list_archs

    for name in list_archs():
        spec = get_arch(name)
        assert ArchSpec.from_dict(spec.to_dict()) == spec
        assert math.isfinite(spec.bn_eps)


@pytest.fixture(scope="module")
def resnet_base() -> Base:
    """The shipped digits DS-ResNet: a spec with residual families, a stem without pooling, per-family rules."""
    from safetensors.torch import load_file

    from dsnet_export.export.build import shipped_weights

    path = shipped_weights("ds_resnet_digits")
    header, data = split(path.read_bytes())
    return Base(path.read_bytes(), header, data, json.loads(header["__metadata__"]["arch_spec"]), load_file(path))


@SETTINGS
@given(data=st.data(), toggle=st.sampled_from(["", "block", "pool", "residual"]))
def test_a_mutated_residual_spec_loads_or_raises_the_typed_error(scratch, resnet_base, data, toggle):
    """The residual families' own rules (bottleneck widths, identity shortcuts, 'residual' only on ds) and the new
    fields (stem pool, stage residual) are checked like every other field: a typed error or a model, never a crash."""
    spec = copy.deepcopy(resnet_base.spec)
    stage = data.draw(st.integers(0, len(spec["stages"]) - 1))
    if toggle == "block":
        spec["stages"][stage]["block"] = data.draw(st.sampled_from(["ds", "basic", "bottleneck"]))
    elif toggle == "pool":
        spec["stem"]["pool"] = data.draw(st.one_of(st.booleans(), HOSTILE))
    elif toggle == "residual":
        spec["stages"][stage]["residual"] = data.draw(st.one_of(st.booleans(), HOSTILE))
    for _ in range(data.draw(st.integers(0, 2))):
        _mutate(data.draw, spec)
    path = scratch / "resnet.safetensors"
    path.write_bytes(resnet_base.with_spec(text=_render(spec)))
    _load_or_typed_error(path)
