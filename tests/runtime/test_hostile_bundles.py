"""Hostile bundles (issue 13): every tampered copy of the tiny bundle either runs exactly like the original or is
refused with a ``DsnetError`` (never another exception, never a signal, never different logits); hostile budget
files, safetensors headers, manifests and external-data references likewise."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from dsnet_export import BundleError, DsnetError
from dsnet_export.errors import InputError
from dsnet_export.runtime import Dispatcher, load_bundle
from dsnet_export.runtime.backends.ort import OrtOptions
from dsnet_export.runtime.budget import load_budget, manifest_digest
from dsnet_export.runtime.bundle import ENGINE_METADATA
from dsnet_export.runtime.manifest import parse_manifest
from dsnet_export.runtime.weights import map_weights, read_layout

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FORCED = ("uniform:4", "largest")  # the tiny bundle's non-gate routes, run by name


# -- helpers ------------------------------------------------------------------------------------------------------
def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def _write_manifest(root: Path, data: dict) -> None:
    (root / "manifest.json").write_text(json.dumps(data))


def edit(change):
    """A tamper that edits the manifest's JSON data with ``change(data)``."""
    def apply(root: Path) -> None:
        data = _manifest(root)
        change(data)
        _write_manifest(root, data)
    return apply


def rehash(root: Path, *names: str) -> None:
    """Make the manifest's size and sha256 of ``names`` agree with the files (an attacker who edits both)."""
    data = _manifest(root)
    for name in names or list(data["files"]):
        path = root / name
        data["files"][name] = {"size": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    _write_manifest(root, data)


def swap_files(a: str, b: str, fix_hashes: bool = False):
    def apply(root: Path) -> None:
        tmp = root / ".swap"
        os.replace(root / a, tmp)
        os.replace(root / b, root / a)
        os.replace(tmp, root / b)
        if fix_hashes:
            rehash(root, a, b)
    return apply


def swap_manifest_files(i: int, j: int):
    def change(d):
        d["routes"][i]["file"], d["routes"][j]["file"] = d["routes"][j]["file"], d["routes"][i]["file"]
    return edit(change)


def onnx_edit(name: str, change, fix_hashes: bool = True):
    """Edit an engine with ``change(model)`` (external data not loaded), save it, and rehash it."""
    def apply(root: Path) -> None:
        model = onnx.load(str(root / name), load_external_data=False)
        change(model)
        (root / name).write_bytes(model.SerializeToString())
        if fix_hashes:
            rehash(root, name)
    return apply


def write_bytes(name: str, data: bytes | None = None, *, append: bytes = b"", keep: int | None = None,
                fix_hashes: bool = False):
    def apply(root: Path) -> None:
        path = root / name
        content = path.read_bytes() if data is None else data
        if keep is not None:
            content = content[:keep] if keep >= 0 else content[:keep]
        path.write_bytes(content + append)
        if fix_hashes:
            rehash(root, name)
    return apply


def header_edit(change, *, same_length: bool = True, fix_hashes: bool = False):
    """Rewrite the weights file's safetensors header with ``change(header)`` (padded to its length)."""
    def apply(root: Path) -> None:
        path = root / "weights.safetensors"
        raw = path.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        header = change(header) or header
        text = json.dumps(header, separators=(",", ":")).encode()
        if same_length:
            assert len(text) <= n, "edit made the header longer"
            text = text.ljust(n)
        path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
        if fix_hashes:
            rehash(root, "weights.safetensors")
    return apply


def raw_header(new_prefix: bytes):
    """Overwrite the weights file's first bytes (header length and header text) in place."""
    def apply(root: Path) -> None:
        path = root / "weights.safetensors"
        raw = bytearray(path.read_bytes())
        raw[:len(new_prefix)] = new_prefix
        path.write_bytes(bytes(raw))
    return apply


def strip_identity(*names: str):
    def apply(root: Path) -> None:
        for name in names or ("gate.onnx", *(f"route_{k}.onnx" for k in range(6))):
            model = onnx.load(str(root / name), load_external_data=False)
            for prop in list(model.metadata_props):
                if prop.key == ENGINE_METADATA:
                    model.metadata_props.remove(prop)
            (root / name).write_bytes(model.SerializeToString())
            rehash(root, name)
    return apply


def set_identity(name: str, **changes):
    def change(model):
        prop = next(p for p in model.metadata_props if p.key == ENGINE_METADATA)
        identity = json.loads(prop.value)
        identity.update(changes)
        prop.value = json.dumps(identity)
    return onnx_edit(name, change)


def external(tensor) -> dict:
    return {e.key: e for e in tensor.external_data}


def first_external(model):
    return next(t for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL)


def ext_field(key: str, value):
    """Set external-data field ``key`` of route_0's first external initializer (``value(old)`` or a string)."""
    def change(model):
        entry = external(first_external(model))[key]
        entry.value = value(entry.value) if callable(value) else value
    return onnx_edit("route_0.onnx", change)


def tensor_edit(change):
    return onnx_edit("route_0.onnx", lambda model: change(first_external(model), model))


def _rename_to_other(tensor, model):
    layout = read_layout(Path(tensor_edit.root) / "weights.safetensors") if hasattr(tensor_edit, "root") else None
    del layout


def constant_node(location: str, offset: int, length: int, name: str, *, subgraph: bool = False):
    """Add to route_0 a Constant node whose tensor is external data (inside an If's branch with ``subgraph``)."""
    def change(model):
        value = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[length // 4],
                            data_location=TensorProto.EXTERNAL)
        for key, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
            value.external_data.add(key=key, value=v)
        node = helper.make_node("Constant", [], ["hostile/const"], value=value)
        if subgraph:
            branch = helper.make_graph([node], "branch", [], [helper.make_tensor_value_info(
                "hostile/const", TensorProto.FLOAT, None)])
            cond = helper.make_node("Constant", [], ["hostile/cond"],
                                    value=helper.make_tensor("c", TensorProto.BOOL, [], [True]))
            node = helper.make_node("If", ["hostile/cond"], ["hostile/out"], then_branch=branch, else_branch=branch)
            model.graph.node.insert(0, cond)
        model.graph.node.insert(0, node)
    return onnx_edit("route_0.onnx", change)


def weights_tensor(root: Path, index: int = 0):
    layout = read_layout(root / "weights.safetensors")
    name = sorted(layout)[index]
    return name, layout[name]


def constant_from_weights(subgraph: bool, shift: int = 0):
    """A Constant node reading one stored tensor (``shift`` bytes off its true place)."""
    def apply(root: Path) -> None:
        name, t = weights_tensor(root)
        constant_node("weights.safetensors", t.offset + shift, t.length, name, subgraph=subgraph)(root)
    return apply


def symlink(name: str, target, *, outside: bool = False):
    def apply(root: Path) -> None:
        path = root / name
        if outside:
            dest = root.parent / f"outside-{name.replace('/', '_')}"
            shutil.copy(path, dest)
            target_path = dest
        else:
            target_path = Path(target)
        path.unlink()
        os.symlink(target_path, path)
    return apply


def replace_with_dir(name: str):
    def apply(root: Path) -> None:
        (root / name).unlink()
        (root / name).mkdir()
    return apply


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def manifest_text(transform):
    def apply(root: Path) -> None:
        path = root / "manifest.json"
        path.write_text(transform(path.read_text()))
    return apply


def swap_route_entries(d):
    """Swap routes 0 and 1 whole (a consistent permutation: same engines, other indices)."""
    d["routes"][0], d["routes"][1] = d["routes"][1], d["routes"][0]
    d["routes"][0]["index"], d["routes"][1]["index"] = 0, 1
    d["gate"]["routes"] = [1, 0, 2, 3]


def _other_same_shape(tensor, model, root: Path | None = None):
    pass


TAMPERS = {
    # manifest field edits (the manifest is covered by no hash)
    "route files swapped 0<->1": swap_manifest_files(0, 1),
    "route files swapped 1<->2": swap_manifest_files(1, 2),
    "route files swapped 0<->3": swap_manifest_files(0, 3),
    "route files swapped 3<->4 (gate/forced)": swap_manifest_files(3, 4),
    "route files swapped 4<->5 (forced/fixed)": swap_manifest_files(4, 5),
    "route 0 file is the gate": edit(lambda d: d["routes"][0].update(file="gate.onnx")),
    "gate file is route 0": edit(lambda d: d["gate"].update(file="route_0.onnx")),
    "gate file is the fixed route": edit(lambda d: d["gate"].update(file="route_5.onnx")),
    "fixed route file is the gate": edit(lambda d: d["routes"][5].update(file="gate.onnx")),
    "route 1 shares route 0's file": edit(lambda d: d["routes"][1].update(file="route_0.onnx")),
    "route 0 file is a standalone export": edit(lambda d: d["routes"][0].update(file="standalone/route_0.onnx")),
    "fixed route file is a standalone export": edit(lambda d: d["routes"][5].update(file="standalone/route_5.onnx")),
    "route entries swapped whole": edit(swap_route_entries),
    "gate indices swapped": edit(lambda d: (d["routes"][0].update(gate_index=1), d["routes"][1].update(gate_index=0),
                                            d["gate"].update(routes=[1, 0, 2, 3]))),
    "gate.routes reordered": edit(lambda d: d["gate"].update(routes=[1, 0, 2, 3])),
    "route 0 widths": edit(lambda d: d["routes"][0].update(widths=[8, 16, 24, 32, 128])),
    "fixed route widths": edit(lambda d: d["routes"][5].update(widths=d["routes"][4]["widths"])),
    "route names swapped": edit(lambda d: (d["routes"][0].update(name=d["routes"][1]["name"]),
                                           d["routes"][1].update(name="uniform:0"))),
    "forced route renamed": edit(lambda d: d["routes"][4].update(name="uniform:3")),
    "route 3 made fixed": edit(lambda d: d["routes"][3].update(kind="fixed", gate_index=None)),
    "forced route made a gate route": edit(lambda d: d["routes"][4].update(kind="gate", gate_index=3)),
    "route output renamed": edit(lambda d: d["routes"][0].update(output="features")),
    "route input is the image": edit(lambda d: d["routes"][0].update(input="image")),
    "gate outputs swapped": edit(lambda d: d["gate"].update(features="gate_logits", logits="features")),
    "gate input renamed": edit(lambda d: (d["gate"].update(input="x"), d["input"].update(name="x"),
                                          d["routes"][5].update(input="x"))),
    "features shape": edit(lambda d: d["gate"].update(features_shape=[24, 2, 8])),
    "features channels": edit(lambda d: d["gate"].update(features_shape=[16, 4, 4])),
    "input size": edit(lambda d: d["input"].update(shape=[3, 16, 16])),
    "input channels": edit(lambda d: d["input"].update(shape=[1, 32, 32], mean=[0.5], std=[0.25])),
    "class count": edit(lambda d: d["arch"].update(num_classes=11)),
    "class count with labels": edit(lambda d: (d["arch"].update(num_classes=9), d.update(labels=list("abcdefghi")))),
    "labels of the wrong count": edit(lambda d: d.update(labels=["a", "b"])),
    "route macs changed (reported only)": edit(lambda d: d["routes"][2].update(macs=d["routes"][2]["macs"] + 1)),
    "route macs huge": edit(lambda d: d["routes"][2].update(macs=10 ** 30)),
    "gate macs negative": edit(lambda d: d["gate"].update(macs=-1)),
    "route params huge": edit(lambda d: d["routes"][1].update(params=2 ** 63)),
    "file size huge": edit(lambda d: d["files"]["route_0.onnx"].update(size=2 ** 64)),
    "schema version 1.0": edit(lambda d: d.update(schema_version=1.0)),
    "schema version true": edit(lambda d: d.update(schema_version=True)),
    "weights name is an engine": edit(lambda d: d.update(weights="gate.onnx")),
    "weights name is a standalone export": edit(lambda d: d.update(weights="standalone/route_0.onnx")),
    "weights size off by one": edit(lambda d: d["files"]["weights.safetensors"].update(
        size=d["files"]["weights.safetensors"]["size"] + 1)),
    "engine hashes swapped": edit(lambda d: (d["files"]["route_0.onnx"].update(sha256=d["files"]["route_1.onnx"][
        "sha256"]), d["files"]["route_1.onnx"].update(sha256=d["files"]["route_0.onnx"]["sha256"]))),
    "standalone files dropped": edit(lambda d: [d["files"].pop(k) for k in list(d["files"]) if "standalone" in k]),
    "files lists a missing file": edit(lambda d: d["files"].update({"extra.onnx": d["files"]["route_0.onnx"]})),
    "files lists the manifest": edit(lambda d: d["files"].update({"manifest.json": d["files"]["route_0.onnx"]})),
    "trt plans for missing files": edit(lambda d: d.update(trt=[{
        "tag": "x", "tensorrt_version": "10", "gpu": "g", "compute_capability": [8, 7], "precision": "fp16",
        "opt_batch": 1, "max_batch": 1, "stripped": False, "plans": {}, "variants": {}}])),
    "split seed in unicode digits": edit(lambda d: d["source"].update(split_seed="\u00b2")),
    "tool and name changed (harmless)": edit(lambda d: d.update(tool="x", name="renamed")),
    "input mean 1e308 x 10": manifest_text(lambda t: t.replace('"mean": [0.5', '"mean": [1e309', 1)),
    "input std NaN": manifest_text(lambda t: t.replace('"std": [0.25', '"std": [NaN', 1)),
    "input std Infinity": manifest_text(lambda t: t.replace('"std": [0.25', '"std": [-Infinity', 1)),
    "input std zero": edit(lambda d: d["input"].update(std=[0.0, 0.25, 0.25])),
    "macs with 5000 digits": manifest_text(lambda t: t.replace('"macs": ', '"macs": ' + "9" * 5000, 1)),
    "manifest nested 100000 deep": manifest_text(lambda t: t.replace('"source": {', f'"deep": {nested(100000)}, '
                                                                     '"source": {', 1)),
    "arch nested 10000 deep": manifest_text(lambda t: t.replace('"arch": {', f'"arch": {{"deep": {nested(10000)}, ',
                                                                1)),
    "manifest whitespace appended (harmless)": write_bytes("manifest.json", append=b"\n  \n"),
    "manifest garbage appended": write_bytes("manifest.json", append=b"}"),
    "manifest empty": write_bytes("manifest.json", b""),
    "manifest not UTF-8": write_bytes("manifest.json", b"\xff\xfe{\x00}"),
    "manifest a JSON list": write_bytes("manifest.json", b"[1, 2]"),
    "manifest truncated": write_bytes("manifest.json", keep=200),
    # file swaps, truncations, appended bytes
    "route files swapped on disk": swap_files("route_0.onnx", "route_1.onnx"),
    "route files swapped on disk, rehashed": swap_files("route_0.onnx", "route_1.onnx", fix_hashes=True),
    "route 2/3 swapped on disk, rehashed": swap_files("route_2.onnx", "route_3.onnx", fix_hashes=True),
    "gate and route swapped on disk, rehashed": swap_files("gate.onnx", "route_0.onnx", fix_hashes=True),
    "forced and fixed swapped on disk, rehashed": swap_files("route_4.onnx", "route_5.onnx", fix_hashes=True),
    "gate replaced by a route, rehashed": lambda root: (shutil.copy(root / "route_0.onnx", root / "gate.onnx"),
                                                       rehash(root, "gate.onnx")),
    "weights truncated by a byte": write_bytes("weights.safetensors", keep=-1),
    "weights truncated to half": lambda root: write_bytes(
        "weights.safetensors", keep=(root / "weights.safetensors").stat().st_size // 2)(root),
    "weights truncated to 8 bytes": write_bytes("weights.safetensors", keep=8),
    "weights empty": write_bytes("weights.safetensors", b""),
    "weights truncated, rehashed": write_bytes("weights.safetensors", keep=-4, fix_hashes=True),
    "weights truncated to half, rehashed": lambda root: write_bytes(
        "weights.safetensors", keep=(root / "weights.safetensors").stat().st_size // 2, fix_hashes=True)(root),
    "weights appended": write_bytes("weights.safetensors", append=b"\0" * 16),
    "weights appended, rehashed (harmless)": write_bytes("weights.safetensors", append=b"\0" * 16, fix_hashes=True),
    "route truncated": write_bytes("route_0.onnx", keep=100),
    "route truncated, rehashed": write_bytes("route_0.onnx", keep=100, fix_hashes=True),
    "route appended": write_bytes("route_1.onnx", append=b"\x00\x01junk"),
    "route appended, rehashed": write_bytes("route_1.onnx", append=b"\x08\x07", fix_hashes=True),
    "gate appended garbage, rehashed": write_bytes("gate.onnx", append=b"\xff" * 7, fix_hashes=True),
    "route replaced by random bytes (same size)": lambda root: write_bytes(
        "route_2.onnx", np.random.default_rng(0).bytes((root / "route_2.onnx").stat().st_size))(root),
    "route replaced by random bytes, rehashed": write_bytes("route_2.onnx", np.random.default_rng(1).bytes(999),
                                                            fix_hashes=True),
    "route is text, rehashed": write_bytes("route_0.onnx", b"not an onnx model\n", fix_hashes=True),
    "route empty, rehashed": write_bytes("route_0.onnx", b"", fix_hashes=True),
    "gate is JSON, rehashed": write_bytes("gate.onnx", b'{"graph": 1}', fix_hashes=True),
    # weights header edits
    "header length too large": raw_header(struct.pack("<Q", 10 ** 12)),
    "header length 0": raw_header(struct.pack("<Q", 0)),
    "header length off by one": lambda root: raw_header(struct.pack("<Q", struct.unpack(
        "<Q", (root / "weights.safetensors").read_bytes()[:8])[0] - 1))(root),
    "header not JSON": raw_header(struct.pack("<Q", 16) + b"{{{{{{{{{{{{{{{{")[:8] if False else
    (lambda root: raw_header(b"\x10" + b"\0" * 7 + b"[" * 16)(root)),
    "header a JSON list": header_edit(lambda h: [1]),
    "header dtype F16": header_edit(lambda h: next(v for k, v in h.items() if k != "__metadata__").update(
        dtype="F16")),
    "header shape changed": header_edit(lambda h: next(v for k, v in sorted(h.items()) if k != "__metadata__"
                                                       and len(v["shape"]) > 1).update(
        shape=list(reversed(next(v for k, v in sorted(h.items()) if k != "__metadata__"
                                 and len(v["shape"]) > 1)["shape"])))),
    "header offsets of two tensors swapped": header_edit(lambda h: _swap_same_size(h)),
    "header offsets overlap": header_edit(lambda h: _overlap(h)),
    "header offsets past the end": header_edit(lambda h: _past_end(h)),
    "header offsets reversed": header_edit(lambda h: _reverse_offsets(h)),
    "header offsets are strings": header_edit(lambda h: _stringify(h)),
    "header offsets negative": header_edit(lambda h: _negative(h)),
    "header tensor renamed": header_edit(lambda h: _rename(h)),
    "header tensor is a list": header_edit(lambda h: _as_list(h)),
    "header extra field": header_edit(lambda h: _extra_field(h)),
    "header metadata not strings": header_edit(lambda h: h.update(__metadata__={"format": 1})),
    "header with NaN": header_edit(lambda h: _nan(h), same_length=False),
    "header nested deep": header_edit(lambda h: h.update(deep=json.loads(nested(900))), same_length=False,
                                      fix_hashes=True),
    "header rewritten longer, rehashed": header_edit(lambda h: h["__metadata__"].update(note="x" * 50),
                                                     same_length=False, fix_hashes=True),
    # symlinks and non-files
    "manifest is a link outside": symlink("manifest.json", None, outside=True),
    "manifest is a link inside (harmless)": lambda root: (shutil.copy(root / "manifest.json", root / "m.json"),
                                                          symlink("manifest.json", "m.json")(root)),
    "manifest is a directory": replace_with_dir("manifest.json"),
    "weights are a link outside": symlink("weights.safetensors", None, outside=True),
    "route is a link to another route": symlink("route_0.onnx", "route_1.onnx"),
    "route is a link to /dev/zero": symlink("route_0.onnx", "/dev/zero"),
    "route is a dangling link": symlink("route_0.onnx", "nowhere.onnx"),
    "route is a link loop": lambda root: ((root / "route_0.onnx").unlink(), os.symlink("route_0.onnx",
                                                                                         root / "route_0.onnx")),
    "route is a directory": replace_with_dir("route_3.onnx"),
    "weights are a directory": replace_with_dir("weights.safetensors"),
    # external data references
    "ext location leaves the bundle": ext_field("location", "../weights.safetensors"),
    "ext location absolute": ext_field("location", "/etc/passwd"),
    "ext location is the manifest": ext_field("location", "manifest.json"),
    "ext location another engine": ext_field("location", "gate.onnx"),
    "ext offset +4": ext_field("offset", lambda v: str(int(v) + 4)),
    "ext offset 0": ext_field("offset", "0"),
    "ext offset hex": ext_field("offset", lambda v: hex(int(v))),
    "ext offset signed": ext_field("offset", lambda v: "+" + v),
    "ext offset huge": ext_field("offset", "9" * 40),
    "ext length -4": ext_field("length", lambda v: str(int(v) - 4)),
    "ext length doubled": ext_field("length", lambda v: str(2 * int(v))),
    "ext length empty": ext_field("length", ""),
    "ext offset missing": tensor_edit(lambda t, m: t.external_data.remove(external(t)["offset"])),
    "ext length missing": tensor_edit(lambda t, m: t.external_data.remove(external(t)["length"])),
    "ext unknown key": tensor_edit(lambda t, m: t.external_data.add(key="basepath", value="/")),
    "ext location twice": tensor_edit(lambda t, m: t.external_data.add(key="location", value="/etc/passwd")),
    "ext tensor renamed to a missing name": tensor_edit(lambda t, m: _rename_tensor(m, t.name, "no.such.tensor")),
    "ext dims changed": tensor_edit(lambda t, m: t.dims.__setitem__(0, t.dims[0] + 1)),
    "ext dtype double": tensor_edit(lambda t, m: setattr(t, "data_type", TensorProto.DOUBLE)),
    "ext fields on an embedded tensor": onnx_edit("route_0.onnx", lambda m: next(
        t for t in m.graph.initializer if t.data_location != TensorProto.EXTERNAL).external_data.add(
        key="location", value="/etc/passwd")),
    "ext marked external without fields": onnx_edit("route_0.onnx", lambda m: setattr(next(
        t for t in m.graph.initializer if t.data_location != TensorProto.EXTERNAL), "data_location",
        TensorProto.EXTERNAL)),
    "constant node reads outside": constant_node("/etc/hostname", 0, 4, "x"),
    "constant node reads a missing tensor": constant_node("weights.safetensors", 0, 4, "no.such.tensor"),
    "constant node reads a tensor, shifted": constant_from_weights(False, shift=4),
    "constant in a subgraph reads outside": constant_node("../outside.bin", 0, 4, "x", subgraph=True),
    "constant in a subgraph reads a tensor, shifted": constant_from_weights(True, shift=-4),
    # engine graph and identity edits (rehashed)
    "route output renamed in the graph": onnx_edit("route_0.onnx", lambda m: _rename_output(m, "logits", "y")),
    "route output shape in the graph": onnx_edit("route_0.onnx", lambda m: m.graph.output[0].type.tensor_type.shape
                                                 .dim[1].__setattr__("dim_value", 11)),
    "route input batch fixed": onnx_edit("route_0.onnx", lambda m: m.graph.input[0].type.tensor_type.shape.dim[0]
                                         .__setattr__("dim_value", 4)),
    "gate lost an output": onnx_edit("gate.onnx", lambda m: m.graph.output.pop()),
    "identity of route 0 claims route 1": set_identity("route_0.onnx", route="uniform:1", gate_index=1),
    "identity claims another part": set_identity("route_0.onnx", part="full"),
    "identity lies about outputs": set_identity("route_0.onnx", outputs={"logits": [-1, 11]}),
    "identity is not JSON": onnx_edit("route_1.onnx", lambda m: setattr(next(
        p for p in m.metadata_props if p.key == ENGINE_METADATA), "value", "{nope")),
    "identity recorded twice": onnx_edit("route_1.onnx", lambda m: m.metadata_props.add(
        key=ENGINE_METADATA, value="{}")),
    "identity stripped from one route (harmless)": strip_identity("route_2.onnx"),
    "identity stripped from all (harmless)": strip_identity(),
    "no identity, gate replaced by a route": lambda root: (strip_identity()(root), shutil.copy(
        root / "route_0.onnx", root / "gate.onnx"), rehash(root, "gate.onnx")),
    "no identity, forced and fixed swapped": lambda root: (strip_identity()(root),
                                                          swap_manifest_files(4, 5)(root)),
    "no identity, class count": lambda root: (strip_identity()(root),
                                              edit(lambda d: d["arch"].update(num_classes=12))(root)),
    "no identity, features shape": lambda root: (strip_identity()(root),
                                                 edit(lambda d: d["gate"].update(features_shape=[24, 4, 2]))(root)),
}


def _tensors(h):
    return sorted((k, v) for k, v in h.items() if k != "__metadata__")


def _swap_same_size(h):
    by_size = {}
    for _key, v in _tensors(h):
        by_size.setdefault(v["data_offsets"][1] - v["data_offsets"][0], []).append(v)
    a, b = next(vs for vs in by_size.values() if len(vs) > 1)[:2]
    a["data_offsets"], b["data_offsets"] = b["data_offsets"], a["data_offsets"]


def _overlap(h):
    (_, a), (_, b) = sorted(_tensors(h), key=lambda kv: kv[1]["data_offsets"][0])[:2]
    b["data_offsets"] = [a["data_offsets"][0], a["data_offsets"][0] + b["data_offsets"][1] - b["data_offsets"][0]]


def _past_end(h):
    _, v = max(_tensors(h), key=lambda kv: kv[1]["data_offsets"][1])
    v["data_offsets"] = [v["data_offsets"][0] + 4, v["data_offsets"][1] + 4]


def _reverse_offsets(h):
    _, v = _tensors(h)[0]
    v["data_offsets"] = v["data_offsets"][::-1]


def _stringify(h):
    _, v = _tensors(h)[0]
    v["data_offsets"] = [str(o) for o in v["data_offsets"]]


def _negative(h):
    _, v = _tensors(h)[0]
    v["data_offsets"] = [-4, v["data_offsets"][1] - v["data_offsets"][0] - 4]


def _rename(h):
    k, v = _tensors(h)[0]
    h["Z" + k[1:]] = h.pop(k)


def _as_list(h):
    k, v = _tensors(h)[0]
    h[k] = [v["dtype"], v["shape"], v["data_offsets"]]


def _extra_field(h):
    _, v = _tensors(h)[0]
    v["x"] = 1


def _nan(h):
    _, v = _tensors(h)[0]
    v["shape"] = [float("nan")]


def _rename_tensor(model, old, new):
    for t in model.graph.initializer:
        if t.name == old:
            t.name = new
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def _rename_output(model, old, new):
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for o in model.graph.output:
        if o.name == old:
            o.name = new


def test_at_least_80_tampered_bundles():
    assert len(TAMPERS) >= 80


@pytest.fixture(scope="module")
def reference(tiny_bundle, mixed_batch):
    x, bias = mixed_batch
    with Dispatcher.load(tiny_bundle.path) as d:
        d.gate_bias = bias
        return _outcome(d, x, bias)


def _outcome(d: Dispatcher, x: np.ndarray, bias: np.ndarray):
    """Per-sample logits and route names of a routed call, and of each forced route by name."""
    d.gate_bias = bias
    result = d(x)
    names = [d.manifest.routes[k].name for k in result.routes]
    forced = {name: d.run(x[:3], route=name).logits for name in FORCED}
    return result.logits, names, forced


@pytest.mark.parametrize("name", list(TAMPERS))
def test_a_tampered_bundle_runs_as_the_original_or_is_refused(name, tiny_bundle, tmp_path, reference, mixed_batch):
    root = tmp_path / "b"
    shutil.copytree(tiny_bundle.path, root, symlinks=True)
    TAMPERS[name](root)
    loaded = []
    for verify in (True, False):
        try:
            loaded.append(load_bundle(root, verify=verify))
        except DsnetError:
            pass
    x, bias = mixed_batch
    try:
        with Dispatcher.load(root, verify=False, lazy=False) as d:
            outcome = _outcome(d, x, bias)
    except DsnetError:
        return
    assert loaded, "the dispatcher ran a bundle load_bundle refused"
    logits, names, forced = outcome
    np.testing.assert_array_equal(logits, reference[0], err_msg=name)
    assert names == reference[1]
    for route in FORCED:
        np.testing.assert_array_equal(forced[route], reference[2][route], err_msg=f"{name}: {route}")


HARMLESS = [name for name in TAMPERS if "harmless" in name or name.startswith(("route entries swapped whole",
                                                                                "gate indices swapped"))]


@pytest.mark.parametrize("name", [n for n in TAMPERS if "harmless" in n])
def test_harmless_edits_still_load(name, tiny_bundle, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(tiny_bundle.path, root, symlinks=True)
    TAMPERS[name](root)
    load_bundle(root, verify=False)


@pytest.mark.parametrize("name", ["route files swapped 0<->1", "route files swapped on disk, rehashed",
                                  "gate file is route 0", "no identity, gate replaced by a route",
                                  "ext offset +4", "constant in a subgraph reads a tensor, shifted",
                                  "header offsets of two tensors swapped", "manifest is a link outside",
                                  "no identity, class count", "ext tensor renamed to a missing name"])
def test_the_silent_wrong_answers_are_refused_at_load(name, tiny_bundle, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(tiny_bundle.path, root, symlinks=True)
    TAMPERS[name](root)
    with pytest.raises(BundleError):
        load_bundle(root, verify=False)


def test_share_weights_off_checks_the_offsets_too(tiny_bundle, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(tiny_bundle.path, root)
    TAMPERS["header offsets of two tensors swapped"](root)
    rehash(root, "weights.safetensors")
    with pytest.raises(BundleError, match="lies at"):
        Dispatcher.load(root, options=OrtOptions(share_weights=False))


# -- a live bundle truncated in place -----------------------------------------------------------------------------
_TRUNCATE = """
import os, sys
import numpy as np
from dsnet_export import BundleError
from dsnet_export.runtime import Dispatcher
root, share = sys.argv[1], sys.argv[2] == "1"
from dsnet_export.runtime.backends.ort import OrtOptions
x = np.zeros((2, 3, 32, 32), np.float32)
d = Dispatcher.load(root, options=OrtOptions(share_weights=share), lazy=True)
d.run(x, route=0)
os.truncate(os.path.join(root, "weights.safetensors"), 64)   # what cp onto a live bundle does first
try:
    d.run(x, route="largest")
except BundleError as exc:
    assert "weights.safetensors" in str(exc), exc
    print("refused:", exc)
    sys.exit(3)
sys.exit(0)
"""


@pytest.mark.parametrize("share", [True, False])
def test_truncating_the_weights_of_a_lazy_dispatcher_is_an_error_not_sigbus(tiny_bundle, tmp_path, share):
    root = tmp_path / "b"
    shutil.copytree(tiny_bundle.path, root)
    done = subprocess.run([sys.executable, "-c", _TRUNCATE, str(root), "1" if share else "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != -7, "killed by SIGBUS"
    assert done.returncode == 3, done.stdout + done.stderr
    assert "refused:" in done.stdout


def test_a_route_file_swapped_under_a_lazy_dispatcher_is_refused(tiny_bundle, tmp_path, mixed_batch):
    root = tmp_path / "b"
    shutil.copytree(tiny_bundle.path, root)
    x, _ = mixed_batch
    with Dispatcher.load(root, lazy=True, verify=False) as d:
        swap_files("route_4.onnx", "route_1.onnx")(root)
        with pytest.raises(BundleError, match="route_4.onnx"):
            d.run(x, route="uniform:4")


def test_renaming_a_new_weights_file_over_the_old_keeps_the_mapped_one(tiny_bundle, tmp_path, mixed_batch):
    """The documented way to update a live bundle: sessions made later still read the file mapped at load."""
    root = tmp_path / "b"
    shutil.copytree(tiny_bundle.path, root)
    x, _ = mixed_batch
    with Dispatcher.load(tiny_bundle.path) as d:
        expected = d.run(x, route="largest").logits
    with Dispatcher.load(root, lazy=True) as d:
        d.run(x, route=0)
        new = root / ".weights.new"
        shutil.copy(root / "weights.safetensors", new)
        os.replace(new, root / "weights.safetensors")
        np.testing.assert_array_equal(d.run(x, route="largest").logits, expected)


# -- inputs -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dispatcher(tiny_bundle):
    with Dispatcher.load(tiny_bundle.path) as d:
        yield d


def test_a_masked_array_is_refused(dispatcher, mixed_batch):
    x, _ = mixed_batch
    x = x[:2].copy()
    x[0, 0, 0, 0] = np.nan
    masked = np.ma.masked_invalid(x)
    assert np.isfinite(masked).all()  # what hid the NaN
    with pytest.raises(InputError, match="filled"):
        dispatcher(masked)
    with pytest.raises(InputError, match="filled"):
        dispatcher(np.ma.masked_array(x[1:], mask=False))
    with pytest.raises(InputError, match="NaN"):
        dispatcher(masked.data)  # the values under the mask, NaN included


@pytest.mark.parametrize("layout", ["strided", "fortran", "big-endian", "read-only", "memmap", "subclass",
                                    "negative strides"])
def test_unusual_arrays_give_the_plain_arrays_results(dispatcher, mixed_batch, layout, tmp_path):
    x = np.ascontiguousarray(mixed_batch[0][:4])
    expected = dispatcher(x).logits
    if layout == "strided":
        wide = np.zeros((8, 3, 32, 32), np.float32)
        wide[::2] = x
        y = wide[::2]
    elif layout == "fortran":
        y = np.asfortranarray(x)
    elif layout == "big-endian":
        y = x.astype(">f4")
    elif layout == "read-only":
        y = x.copy()
        y.flags.writeable = False
    elif layout == "memmap":
        y = np.memmap(tmp_path / "x.bin", dtype=np.float32, mode="w+", shape=x.shape)
        y[:] = x
    elif layout == "subclass":
        class Tagged(np.ndarray):
            pass
        y = x.copy().view(Tagged)
    else:
        y = x[::-1].copy()[::-1]
    np.testing.assert_array_equal(dispatcher(y).logits, expected)
    np.testing.assert_array_equal(dispatcher.run(y, route="largest").logits, dispatcher.run(x, route="largest").logits)


@pytest.mark.parametrize("layout", ["big-endian", "subclass", "fortran"])
def test_unusual_arrays_with_nan_are_refused(dispatcher, mixed_batch, layout):
    x = mixed_batch[0][:2].copy()
    x[1, 2, 3, 4] = np.nan
    y = {"big-endian": x.astype(">f4"), "subclass": x.view(type("T", (np.ndarray,), {})),
         "fortran": np.asfortranarray(x)}[layout]
    with pytest.raises(InputError, match="NaN"):
        dispatcher(y)
    with pytest.raises(InputError, match="NaN"):
        dispatcher.run(y, route="largest")


def test_big_endian_float64_is_still_a_dtype_error(dispatcher, mixed_batch):
    with pytest.raises(InputError, match="float32"):
        dispatcher(mixed_batch[0][:2].astype(">f8"))


# -- hostile budget files -----------------------------------------------------------------------------------------
def _budget(root: Path, **changes) -> dict:
    data = {"version": 1, "manifest_sha256": manifest_digest(root), "target_macs": 1_000_000,
            "achieved_macs": 9.5e5, "unbiased_macs": 1.2e6, "bias": [0.0, -0.5, -1.0, -1.5],
            "histogram": [3, 2, 1, 0], "samples": 6, "data": "val/"}
    data.update(changes)
    return data


def _text(replace_key: str, raw: str):
    """A budget file whose ``replace_key`` value is the raw JSON text ``raw``."""
    def make(root: Path) -> str:
        data = _budget(root, **{replace_key: "@@"})
        return json.dumps(data).replace('"@@"', raw)
    return make


def _json(**changes):
    return lambda root: json.dumps(_budget(root, **changes))


HOSTILE_BUDGETS = {
    "bias NaN": _text("bias", "[NaN, 0, 0, 0]"),
    "bias Infinity": _text("bias", "[Infinity, 0, 0, 0]"),
    "bias -Infinity": _text("bias", "[0, -Infinity, 0, 0]"),
    "bias 1e400": _text("bias", "[1e400, 0, 0, 0]"),
    "bias -1e400": _text("bias", "[0, 0, -1e400, 0]"),
    "bias beyond float32": _json(bias=[1e39, 0, 0, 0]),
    "bias string": _json(bias=["0.5", 0, 0, 0]),
    "bias null": _json(bias=[None, 0, 0, 0]),
    "bias bool": _json(bias=[True, 0, 0, 0]),
    "bias nested list": _json(bias=[[0.0], 0, 0, 0]),
    "bias dict": _json(bias=[{"a": 1}, 0, 0, 0]),
    "bias is a number": _json(bias=0.5),
    "bias is null": _json(bias=None),
    "bias empty": _json(bias=[], histogram=[], samples=0),
    "bias too long": _json(bias=[0, 0, 0, 0, 0], histogram=[3, 2, 1, 0, 0]),
    "bias too short": _json(bias=[0, 0, 0], histogram=[3, 2, 1]),
    "bias 5000-digit integer": _text("bias", "[" + "9" * 5000 + ", 0, 0, 0]"),
    "bias 400-digit integer": _text("bias", "[" + "9" * 400 + ", 0, 0, 0]"),
    "bias nested 100000 deep": _text("bias", nested(100000)),
    "data nested 5000 deep": _text("data", nested(5000)),
    "achieved NaN": _text("achieved_macs", "NaN"),
    "unbiased negative": _json(unbiased_macs=-1.0),
    "target 1e400": _text("target_macs", "1e400"),
    "target float": _json(target_macs=1.5e6),
    "target huge": _json(target_macs=2 ** 70),
    "samples negative": _json(samples=-1),
    "histogram negative": _json(histogram=[7, -1, 0, 0]),
    "histogram sum": _json(histogram=[1, 1, 1, 1]),
    "histogram floats": _json(histogram=[3.0, 2, 1, 0]),
    "version string": _json(version="1"),
    "version float": _json(version=1.0),
    "version bool": _json(version=True),
    "version 2": _json(version=2),
    "extra field": _json(extra=1),
    "missing field": lambda root: json.dumps({k: v for k, v in _budget(root).items() if k != "samples"}),
    "digest upper case": lambda root: json.dumps(_budget(root, manifest_sha256=manifest_digest(root).upper())),
    "digest of another manifest": _json(manifest_sha256="ab" * 32),
    "top-level list": lambda root: "[]",
    "top-level string": lambda root: '"budget"',
    "empty": lambda root: "",
    "not UTF-8": lambda root: b"\xff\xfe\x00{",
    "UTF-16": lambda root: json.dumps(_budget(root)).encode("utf-16"),
    "trailing garbage": lambda root: json.dumps(_budget(root)) + "x",
}


def test_at_least_30_hostile_budgets():
    assert len(HOSTILE_BUDGETS) >= 30


@pytest.fixture(scope="module")
def budget_bundle(tiny_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("budget") / "b"
    shutil.copytree(tiny_bundle.path, root)
    return load_bundle(root, verify=False)


def test_the_valid_budget_loads(budget_bundle):
    path = budget_bundle.root / "budget.json"
    path.write_text(json.dumps(_budget(budget_bundle.root)))
    assert load_budget(path, budget_bundle).bias == [0.0, -0.5, -1.0, -1.5]


@pytest.mark.parametrize("name", list(HOSTILE_BUDGETS))
def test_a_hostile_budget_file_is_a_bundle_error(name, budget_bundle, tmp_path):
    content = HOSTILE_BUDGETS[name](budget_bundle.root)
    path = tmp_path / "budget.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(BundleError):
        load_budget(path, budget_bundle)
    with pytest.raises(BundleError):
        Dispatcher.load(budget_bundle.root, budget=path, lazy=True, verify=False)


def test_a_budget_that_is_a_directory_is_a_bundle_error(budget_bundle, tmp_path):
    (tmp_path / "budget.json").mkdir()
    with pytest.raises(BundleError):
        load_budget(tmp_path / "budget.json", budget_bundle)


# -- fuzzing ------------------------------------------------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2 ** 60, max_value=2 ** 70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)


def _paths(value, prefix=()):
    """Every path (tuple of keys/indices) into a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@pytest.fixture(scope="module")
def manifest_data(tiny_bundle) -> dict:
    return _manifest(tiny_bundle.path)


@FUZZ
@given(data=st.data())
def test_fuzz_manifest_mutations_parse_or_are_bundle_errors(manifest_data, data):
    doc = json.loads(json.dumps(manifest_data))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        path = data.draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(["replace", "delete", "add", "shift"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.text(max_size=6))] = data.draw(JSON)
        elif action == "shift" and type(parent[path[-1]]) is int:
            parent[path[-1]] += data.draw(st.sampled_from([-1, 1, 2 ** 62, -(2 ** 63)]))
        else:
            parent[path[-1]] = data.draw(JSON)
    try:
        parse_manifest(doc, "m.json")
    except BundleError:
        pass


@FUZZ
@given(data=st.data())
def test_fuzz_budget_json_loads_or_is_a_bundle_error(budget_bundle, tmp_path_factory, data):
    doc = _budget(budget_bundle.root)
    key = data.draw(st.sampled_from(sorted(doc)))
    if data.draw(st.booleans()):
        doc[key] = data.draw(JSON)
    elif key == "bias":
        doc["bias"] = data.draw(st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(), min_size=4,
                                         max_size=4))
    text = json.dumps(doc)  # NaN and Infinity written as JSON's non-standard literals
    if data.draw(st.booleans()):
        text = text.replace(data.draw(st.sampled_from(["0.0", "1", ", ", "]", "{"])),
                            data.draw(st.sampled_from(["1e999", "NaN", "9" * 30, "[[[[", "", "-"])), 1)
    path = tmp_path_factory.getbasetemp() / "fuzz-budget.json"
    path.write_text(text)
    try:
        budget = load_budget(path, budget_bundle)
    except BundleError:
        return
    assert all(np.isfinite(np.float32(b)) for b in budget.bias)


@pytest.fixture(scope="module")
def fuzz_root(tiny_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "b"
    shutil.copytree(tiny_bundle.path, root)
    shutil.rmtree(root / "standalone")  # not needed, and it makes every load parse 7 more engines
    edit(lambda d: [d["files"].pop(k) for k in list(d["files"]) if k.startswith("standalone/")])(root)
    return root


@FUZZ
@given(data=st.data())
def test_fuzz_the_weights_header_loads_or_is_a_bundle_error(fuzz_root, tiny_bundle, data):
    path = fuzz_root / "weights.safetensors"
    original = (tiny_bundle.path / "weights.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", original[:8])
    raw = bytearray(original)
    how = data.draw(st.sampled_from(["bytes", "length", "json"]))
    if how == "bytes":
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, 8 + n - 1))] = data.draw(st.integers(0, 255))
    elif how == "length":
        raw[:8] = struct.pack("<Q", data.draw(st.integers(0, 2 ** 64 - 1) | st.integers(n - 8, n + 8)))
    else:
        header = json.loads(original[8:8 + n])
        key = data.draw(st.sampled_from(sorted(header)))
        if key != "__metadata__":
            field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
            header[key][field] = data.draw(JSON | st.lists(st.integers(-8, 2 ** 20), max_size=3))
        else:
            header[key] = data.draw(JSON)
        text = json.dumps(header, separators=(",", ":")).encode()
        raw[:8 + n] = struct.pack("<Q", len(text)) + text
    path.write_bytes(bytes(raw))
    size = len(raw)
    edit(lambda d: d["files"]["weights.safetensors"].update(size=size))(fuzz_root)
    try:
        weights = map_weights(path, size)
        weights.close()
    except BundleError:
        pass
    try:
        load_bundle(fuzz_root, verify=False)
    except BundleError:
        pass


@pytest.fixture(scope="module")
def outside_file(tmp_path_factory):
    """A file outside the bundle with known content: no engine may read it."""
    path = tmp_path_factory.mktemp("outside") / "secret.bin"
    path.write_bytes(np.full(4096, 7.0, np.float32).tobytes())
    return path


@pytest.fixture(scope="module")
def route_reference(tiny_bundle, mixed_batch):
    with Dispatcher.load(tiny_bundle.path) as d:
        return d.run(mixed_batch[0][:4], route=2).logits


@FUZZ
@given(data=st.data())
def test_fuzz_external_data_references_are_refused_or_exact(fuzz_root, tiny_bundle, outside_file, route_reference,
                                                            mixed_batch, data):
    shutil.copy(tiny_bundle.path / "weights.safetensors", fuzz_root / "weights.safetensors")
    edit(lambda d: d["files"]["weights.safetensors"].update(
        size=(fuzz_root / "weights.safetensors").stat().st_size))(fuzz_root)
    model = onnx.load(str(tiny_bundle.path / "route_2.onnx"), load_external_data=False)
    layout = read_layout(fuzz_root / "weights.safetensors")
    externals = [t for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    for _ in range(data.draw(st.integers(1, 3))):
        tensor = data.draw(st.sampled_from(externals))
        fields = external(tensor)
        true = layout[tensor.name]
        choice = data.draw(st.sampled_from(["location", "offset", "length"]))
        if choice == "location":
            value = data.draw(st.sampled_from(["weights.safetensors", str(outside_file), "../outside/secret.bin",
                                               "./weights.safetensors", "weights.safetensors\0", "gate.onnx", ""])
                              | st.text(max_size=12))
        elif choice == "offset":
            value = str(data.draw(st.sampled_from([true.offset, true.offset + 4, true.offset - 4, 0, 8])
                                  | st.integers(-1, 2 ** 40)))
        else:
            value = str(data.draw(st.sampled_from([true.length, true.length + 4, true.length - 4, 0])
                                  | st.integers(-1, 2 ** 40)))
        fields[choice].value = value
    (fuzz_root / "route_2.onnx").write_bytes(model.SerializeToString())
    rehash(fuzz_root, "route_2.onnx")
    share = data.draw(st.booleans())
    try:
        load_bundle(fuzz_root, verify=False)
    except BundleError:
        return
    for t in externals:  # accepted: then every reference is exactly the stored tensor
        fields = external(t)
        assert fields["location"].value == "weights.safetensors"
        assert (int(fields["offset"].value), int(fields["length"].value)) == (layout[t.name].offset,
                                                                             layout[t.name].length)
    with Dispatcher.load(fuzz_root, options=OrtOptions(share_weights=share), lazy=True, verify=False) as d:
        np.testing.assert_array_equal(d.run(mixed_batch[0][:4], route=2).logits, route_reference)


def test_a_reference_to_a_file_outside_is_refused_even_unshared(fuzz_root, tiny_bundle, outside_file):
    shutil.copy(tiny_bundle.path / "weights.safetensors", fuzz_root / "weights.safetensors")
    edit(lambda d: d["files"]["weights.safetensors"].update(
        size=(fuzz_root / "weights.safetensors").stat().st_size))(fuzz_root)
    model = onnx.load(str(tiny_bundle.path / "route_2.onnx"), load_external_data=False)
    tensor = first_external(model)
    fields = external(tensor)
    fields["location"].value, fields["offset"].value = str(outside_file), "0"
    (fuzz_root / "route_2.onnx").write_bytes(model.SerializeToString())
    rehash(fuzz_root, "route_2.onnx")
    with pytest.raises(BundleError, match="may only read"):
        Dispatcher.load(fuzz_root, options=OrtOptions(share_weights=False), verify=False)
    shutil.copy(tiny_bundle.path / "route_2.onnx", fuzz_root / "route_2.onnx")
    rehash(fuzz_root, "route_2.onnx")
