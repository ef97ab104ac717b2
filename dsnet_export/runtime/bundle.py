"""Opening a bundle directory: manifest, path safety, sizes and hashes, the engines' identity and their
external-data links.

Nothing here imports torch: an edge device loads bundles with numpy, onnx and onnxruntime.

The manifest is not covered by any hash, so it is checked against the engines it names: every engine's
graph inputs and outputs (names, shapes, the class count) must be what the manifest's entry for it says,
and engines built by this version carry their own identity (``ENGINE_METADATA`` in the ONNX
``metadata_props``: part, route name, kind, gate output and widths, inputs and outputs), which the file's
hash covers; it must match the manifest entry that names the file.  Every external-data reference of
every engine (initializers, sparse initializers, tensor attributes of any node, subgraphs included) must
point at exactly one tensor of the weights file: same name, float32, same shape, the exact offset and
length the file's header gives it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..arch import EnginePart, RouteKind
from ..errors import BundleError
from ..records import strict_json_loads
from .manifest import MANIFEST_NAME, Manifest, RouteInfo, parse_manifest
from .weights import StoredTensor, read_layout

if TYPE_CHECKING:
    import onnx

    from ..arch import ArchSpec, Route

_CHUNK = 1 << 20
#: ``metadata_props`` key of an engine's identity (a JSON object, see ``engine_identity``).
ENGINE_METADATA = "dsnet_export.engine"
_EXTERNAL_KEYS = {"location", "offset", "length"}


@dataclass(frozen=True)
class Bundle:
    """A validated bundle: where it is and what its manifest says.

    ``layout``: where each tensor of the weights file lies, as checked at load; ``verified``: whether every
    file's sha256 was checked (then sessions check each engine file's hash again when they read it)."""

    root: Path
    manifest: Manifest
    layout: dict[str, StoredTensor] = field(default_factory=dict, compare=False, repr=False)
    verified: bool = field(default=False, compare=False)

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def weights_path(self) -> Path:
        return self.root / self.manifest.weights

    def read_engine(self, file: str) -> onnx.ModelProto:
        """The engine ``file`` as an ONNX model, checked again now (it is read from disk when its session is
        made, which for a lazy dispatcher is later than ``load_bundle``): its size (and, for a verified bundle,
        sha256) against the manifest, its identity and inputs/outputs, its external-data references."""
        path = _inside(self.root.resolve(), self.root, file, f"{self.root / MANIFEST_NAME}: files[{file!r}]")
        entry = self.manifest.files[file]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BundleError(f"{path}: cannot read the engine ({exc.strerror or exc})") from None
        if len(data) != entry.size:
            raise BundleError(f"{path}: size {len(data)} does not match the manifest's {entry.size}; the file was "
                              f"changed since the bundle was loaded")
        if self.verified and hashlib.sha256(data).hexdigest() != entry.sha256:
            raise BundleError(f"{path}: sha256 does not match the manifest's; the file was changed since the bundle "
                              f"was loaded")
        model = _parse_model(data, path)
        layout = self.layout or read_layout(self.weights_path)
        check_engine(model, path, self.manifest, layout, file)
        return model


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _interrupted_swap(root: Path) -> str:
    """Where a build of ``root`` killed between the two renames of its swap (only on file systems without an
    atomic exchange) left the previous bundle, as advice; "" when there is none."""
    if os.path.lexists(root):
        return ""
    try:
        candidates = sorted(root.parent.glob(f".{glob.escape(root.name)}.partial-*/previous/{MANIFEST_NAME}"))
    except OSError:
        return ""
    if not candidates:
        return ""
    previous = candidates[0].parent
    return (f" (a build of it was interrupted while swapping bundles; the previous bundle is at {previous}: the "
            f"next build of {root.name} restores it, or move it back with: mv {previous} {root})")


def load_bundle(directory: str | os.PathLike, *, verify: bool = True) -> Bundle:
    """Parse and check a bundle.

    Always: the manifest's schema and types, that every file name stays inside the bundle
    (no ``..``, no absolute paths, no links leading out, the manifest included), that files exist with
    the listed sizes, that the weights file's header is well formed, that every engine is what its
    manifest entry says (inputs, outputs, identity) and that its external data points only at its own
    tensors in the bundle's weights file.  With ``verify=True`` also every file's sha256.
    """
    root = Path(directory)
    manifest_path = root / MANIFEST_NAME
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory{_interrupted_swap(root)}")
    if not os.path.lexists(manifest_path):
        raise BundleError(f"{manifest_path}: missing (is {root} a dsnet-export bundle?)")
    real_root = root.resolve()
    _inside(real_root, root, MANIFEST_NAME, f"{root}: the manifest")
    try:
        data = strict_json_loads(manifest_path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise BundleError(f"{manifest_path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise BundleError(f"{manifest_path}: cannot read it ({exc.strerror or exc})") from None
    manifest = parse_manifest(data, str(manifest_path))
    paths = {}
    for name, entry in manifest.files.items():
        path = paths[name] = _inside(real_root, root, name, f"{manifest_path}: files[{name!r}]")
        size = path.stat().st_size
        if size != entry.size:
            raise BundleError(f"{path}: size {size} does not match the manifest's {entry.size} (files[{name!r}].size)")
        if verify:
            digest = sha256_file(path)
            if digest != entry.sha256:
                raise BundleError(f"{path}: sha256 {digest[:12]}... does not match the manifest's "
                                  f"{entry.sha256[:12]}... (files[{name!r}].sha256); the file was changed")
    layout = read_layout(paths[manifest.weights])
    for name in manifest.files:
        if name.endswith(".onnx"):
            check_engine(load_model(paths[name]), paths[name], manifest, layout, name)
    return Bundle(root, manifest, layout, verify)


def _inside(real_root: Path, root: Path, name: str, where: str) -> Path:
    pure = Path(name)
    if name == "" or pure.is_absolute() or ".." in pure.parts or "\\" in name or "\0" in name:
        raise BundleError(f"{where}: file name {name!r:.80} leaves the bundle (absolute or '..')")
    path = root / pure
    try:
        if not path.exists():
            raise BundleError(f"{path}: missing ({where})")
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # a link loop, a name too long
        raise BundleError(f"{path}: cannot be opened ({where}: {exc})") from None
    if real_root != resolved and real_root not in resolved.parents:
        raise BundleError(f"{where}: {name!r} is a link that points outside the bundle (to {resolved})")
    if not resolved.is_file():
        raise BundleError(f"{path}: not a regular file ({where})")
    return path


def load_model(path: Path) -> onnx.ModelProto:
    """An ONNX file's graph (external data not loaded), or a BundleError."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return _parse_model(data, path)


def _parse_model(data: bytes, path: Path) -> onnx.ModelProto:
    import onnx

    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types on corrupt input
        raise BundleError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not model.HasField("graph"):
        raise BundleError(f"{path}: not a readable ONNX model (no graph)")
    return model


def check_external_data(onnx_path: Path, weights_name: str, layout: dict[str, StoredTensor] | None = None) -> None:
    """Every external tensor of ``onnx_path`` must be one tensor of the bundle's weights file, exactly."""
    if layout is None:
        layout = read_layout(Path(onnx_path).parent / weights_name)
    _check_external(load_model(onnx_path), Path(onnx_path), weights_name, layout)


# -- engine identity and structure ------------------------------------------------------------------


def _io(values) -> dict[str, list[int]]:
    """Name -> shape (-1 for a dimension without a fixed size) of graph inputs or outputs."""
    out = {}
    for v in values:
        tt = v.type.tensor_type
        out[v.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim] \
            if tt.HasField("shape") else None
    return out


def engine_identity(model: onnx.ModelProto, spec: ArchSpec, part: EnginePart | str, route: Route) -> onnx.ModelProto:
    """Record what engine ``model`` is in its own ``metadata_props`` (``ENGINE_METADATA``), so that the file's
    hash in the manifest covers it and ``load_bundle`` can tell an engine from the one the manifest should have
    named.  Called by the build on every engine before it is saved; returns ``model`` (changed in place)."""
    part = EnginePart(part)
    identity: dict[str, Any] = {"part": part.value}
    if part is not EnginePart.GATE:
        identity.update(route=route.name, kind=route.kind(spec).value, gate_index=route.gate_index,
                        widths=list(route.widths(spec)))
    identity.update(inputs=_io(model.graph.input), outputs=_io(model.graph.output))
    for prop in list(model.metadata_props):
        if prop.key == ENGINE_METADATA:
            model.metadata_props.remove(prop)
    model.metadata_props.add(key=ENGINE_METADATA, value=json.dumps(identity, sort_keys=True))
    return model


def _roles(manifest: Manifest, file: str) -> list[RouteInfo | None]:
    """What the manifest says ``file`` is: None for the gate, a RouteInfo per route naming it."""
    return ([None] if file == manifest.gate.file else []) + [r for r in manifest.routes if r.file == file]


def check_engine(model: onnx.ModelProto, path: Path, manifest: Manifest, layout: dict[str, StoredTensor],
                 name: str) -> None:
    """``model`` (the bundle's file ``name`` at ``path``) against the manifest: its external data, and for an
    engine the manifest runs, its inputs and outputs and its recorded identity."""
    _check_external(model, Path(path), manifest.weights, layout)
    roles = _roles(manifest, name)
    if len(roles) > 1:
        raise BundleError(f"{path}: the manifest names this file for {len(roles)} engines; each needs its own")
    if roles:
        _check_role(model, Path(path), manifest, roles[0])


def _check_role(model: onnx.ModelProto, path: Path, m: Manifest, route: RouteInfo | None) -> None:
    import onnx

    classes = m.arch.get("num_classes")
    image = [-1, *m.input.shape]
    features = [-1, *m.gate.features_shape]
    if route is None:
        what, part = "the gate engine (gate.file)", EnginePart.GATE
        inputs = {m.gate.input: image}
        outputs = {m.gate.features: features, m.gate.logits: [-1, len(m.gate.routes)]}
    else:
        fixed = route.kind == RouteKind.FIXED
        what = f"route {route.index} ({route.name!r:.40}, routes[{route.index}].file)"
        part = EnginePart.FULL if fixed else EnginePart.ROUTE
        inputs = {route.input: image if fixed else features}
        outputs = {route.output: [-1, classes]}
    initializers = {t.name for t in model.graph.initializer}
    actual_inputs = _io(i for i in model.graph.input if i.name not in initializers)
    actual_outputs = _io(model.graph.output)
    for kind, expected, actual, values in (("inputs", inputs, actual_inputs, model.graph.input),
                                           ("outputs", outputs, actual_outputs, model.graph.output)):
        if list(actual) != list(expected) or any(not _same_shape(actual[n], expected[n]) for n in expected):
            raise BundleError(f"{path}: is not {what}: its {kind} are {_show(actual)}, the manifest says "
                              f"{_show(expected)}")
        for v in values:
            if v.name in expected and v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
                raise BundleError(f"{path}: {v.name!r} is not float32, as {what} needs")
    identities = [p.value for p in model.metadata_props if p.key == ENGINE_METADATA]
    if not identities:
        return  # built before engines recorded their identity: the structure above is what can be checked
    try:
        if len(identities) > 1:
            raise ValueError("recorded more than once")
        identity = strict_json_loads(identities[0])
        if not isinstance(identity, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise BundleError(f"{path}: its recorded identity ({ENGINE_METADATA}) is unreadable ({exc})") from None
    expected_identity: dict[str, Any] = {"part": part.value}
    if route is not None:
        expected_identity.update(route=route.name, kind=route.kind, gate_index=route.gate_index,
                                 widths=list(route.widths))
    expected_identity.update(inputs=actual_inputs, outputs=actual_outputs)
    if identity != expected_identity:
        differ = sorted(k for k in {*identity, *expected_identity} if identity.get(k) != expected_identity.get(k))
        shown = ", ".join(f"{k}={identity.get(k)!r:.60}" for k in differ)
        raise BundleError(f"{path}: is not {what}: the engine records {shown}, which the manifest's entry "
                          f"(or the engine's own graph) does not match")


def _same_shape(actual: list[int] | None, expected: list[int]) -> bool:
    """Equal, the batch dimension (first) being dynamic in both."""
    return actual is not None and len(actual) == len(expected) and actual[0] == -1 and actual[1:] == expected[1:]


def _show(io: dict[str, list[int] | None]) -> str:
    return ", ".join(f"{n!r:.40} {s}" for n, s in io.items()) or "none"


# -- external data ---------------------------------------------------------------------------------


def _external_tensors(graph, where: str = "graph"):
    """(where, tensor) for every tensor of ``graph`` that may hold external data, subgraphs included."""
    import onnx

    for t in graph.initializer:
        yield f"{where} initializer", t
    for s in graph.sparse_initializer:
        yield f"{where} sparse initializer", s.values
        yield f"{where} sparse initializer", s.indices
    A = onnx.AttributeProto
    for node in graph.node:
        for attr in node.attribute:
            at = f"{where} node {node.name or node.op_type!r:.60} attribute {attr.name!r:.40}"
            if attr.type == A.TENSOR or attr.HasField("t"):
                yield at, attr.t
            for t in attr.tensors:
                yield at, t
            if attr.HasField("sparse_tensor"):
                yield at, attr.sparse_tensor.values
                yield at, attr.sparse_tensor.indices
            for s in attr.sparse_tensors:
                yield at, s.values
                yield at, s.indices
            if attr.HasField("g"):
                yield from _external_tensors(attr.g, f"{at} subgraph")
            for g in attr.graphs:
                yield from _external_tensors(g, f"{at} subgraph")


def _check_external(model: onnx.ModelProto, path: Path, weights_name: str, layout: dict[str, StoredTensor]) -> None:
    import onnx

    try:
        tensors = list(_external_tensors(model.graph))
    except RecursionError:
        raise BundleError(f"{path}: subgraphs nested too deeply") from None
    for where, tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL and not len(tensor.external_data):
            continue

        def fail(message: str, where=where, tensor=tensor) -> None:
            raise BundleError(f"{path}: {where}: tensor {tensor.name!r:.80} {message}")

        entries: dict[str, str] = {}
        for entry in tensor.external_data:
            if entry.key in entries:
                fail(f"names external data key {entry.key!r:.20} twice")
            entries[entry.key] = entry.value
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            fail("has external-data fields but is not marked external")
        location = entries.get("location")
        if location != weights_name:
            raise BundleError(f"{path}: initializer {tensor.name!r:.80} reads external data from {location!r:.80}; "
                              f"a bundle's engines may only read {weights_name!r}")
        unknown = set(entries) - _EXTERNAL_KEYS - {"checksum"}
        if unknown or not {"offset", "length"} <= set(entries):
            fail(f"needs external data keys location, offset and length (got {', '.join(sorted(entries))})")
        stored = layout.get(tensor.name)
        if stored is None:
            fail(f"is not a tensor of {weights_name}")
        offset, length = (entries[k] if entries[k].isascii() and entries[k].isdigit() and len(entries[k]) < 20
                          else None for k in ("offset", "length"))
        if offset is None or length is None or int(offset) != stored.offset or int(length) != stored.length:
            fail(f"points at bytes {entries['offset']!r:.24} (+{entries['length']!r:.24}) of {weights_name}, but "
                 f"that tensor lies at {stored.offset} (+{stored.length})")
        if tensor.data_type != onnx.TensorProto.FLOAT or tuple(tensor.dims) != stored.shape:
            known = tensor.data_type in onnx.TensorProto.DataType.values()
            declared = onnx.TensorProto.DataType.Name(tensor.data_type) if known else tensor.data_type
            fail(f"is declared {declared} {list(tensor.dims)}, but {weights_name} stores it as FLOAT "
                 f"{list(stored.shape)}")
