"""The bundle manifest (schema version 1): typed dataclasses and a strict parser.

The manifest is the contract between export and runtime.  The exporter builds these
dataclasses and writes ``to_dict()``; the runtime parses the JSON back with ``parse_manifest``,
which rejects unknown versions, missing or extra fields and wrong types, naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..arch import ArchSpec, Route, RouteKind, resolve_route
from ..errors import BundleError
from ..records import INT_LIMIT, parse_record

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass(frozen=True)
class InputInfo:
    """The image tensor the gate (or a fixed route) takes: NCHW float32, dynamic batch."""

    name: str
    shape: list[int]  # [C, H, W]; the batch dimension is dynamic
    layout: str
    dtype: str
    mean: list[float]
    std: list[float]
    resize: int | None
    interpolation: str


@dataclass(frozen=True)
class GateInfo:
    file: str
    input: str
    features: str
    logits: str
    features_shape: list[int]  # [C, H, W] of the features every gate-sharing route consumes
    #: ``routes[g]`` is the manifest route index the gate's output ``g`` selects.
    routes: list[int]
    macs: int  # pre-gate network + gate head, batch 1


@dataclass(frozen=True)
class RouteInfo:
    """One width engine.

    ``index`` is the route's place in the manifest's ``routes`` (what a dispatcher reports);
    ``gate_index`` the gate output that picks it (``gate.routes[gate_index] == index``), None for
    routes the gate never picks.  ``kind``: a ``RouteKind`` value (gate, forced, fixed).
    """

    index: int
    name: str
    kind: str
    gate_index: int | None
    widths: list[int]  # stem, then one per stage
    macs: int
    params: int
    file: str
    input: str
    output: str

    def spec_route(self, spec: ArchSpec) -> Route:
        """The arch route this engine runs (its gate output for gate routes, else its name)."""
        return resolve_route(spec, self.gate_index if self.kind == RouteKind.GATE else self.name)


@dataclass(frozen=True)
class TrtPlans:
    """TensorRT plans built on one kind of device (``trt/<tag>/``), one per engine file.

    ``variants`` holds the sha256 of the ONNX each plan was built from (see ``backends.trt.variant``): a
    weight-stripped plan is refitted from that same ONNX, regenerated from the weights file.
    """

    tag: str
    tensorrt_version: str
    gpu: str
    compute_capability: list[int]
    precision: str
    opt_batch: int
    max_batch: int
    stripped: bool
    plans: dict[str, str]     # engine file -> plan file
    variants: dict[str, str]  # engine file -> sha256 of its TensorRT variant ONNX


#: Formats a bundle can carry besides its ONNX engines (``export-format``), each in its own folder.
FORMATS = ("litert",)


@dataclass(frozen=True)
class FormatEngines:
    """The bundle's engines converted to another runtime's format (``<format>/``), one file per engine file.

    ``shares_weights`` False: every converted file carries its own copy of the weights it uses (BatchNorm folded
    per width), unlike the ONNX engines, which read the one ``weights.safetensors``.
    """

    format: str
    converter: str            # converter package and version, e.g. "litert-torch 0.10.0"
    max_batch: int            # the batch dimension is dynamic up to this
    shares_weights: bool
    engines: dict[str, str]   # engine file -> converted file


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    tool: str
    tool_version: str
    name: str
    arch: dict[str, Any]
    input: InputInfo
    gate: GateInfo
    routes: list[RouteInfo]
    weights: str
    files: dict[str, FileEntry]
    source: dict[str, str] = field(default_factory=dict)
    trt: list[TrtPlans] = field(default_factory=list)
    formats: list[FormatEngines] = field(default_factory=list)
    #: Class names in output order, when the checkpoint recorded them (training on a folder does).
    labels: list[str] = field(default_factory=list)

    @property
    def split_seed(self) -> int | None:
        """The train/val/test split seed training recorded, if any (``source['split_seed']``)."""
        recorded = self.source.get("split_seed", "")
        return int(recorded) if re.fullmatch(r"-?[0-9]{1,18}", recorded) else None

    def route(self, index: int) -> RouteInfo:
        return self.routes[index]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def plans_for(self, tag: str) -> TrtPlans | None:
        return next((p for p in self.trt if p.tag == tag), None)

    def format_engines(self, name: str) -> FormatEngines | None:
        return next((f for f in self.formats if f.format == name), None)


def write_manifest(root: Path, manifest: Manifest) -> None:
    (Path(root) / MANIFEST_NAME).write_text(json.dumps(manifest.to_dict(), indent=1) + "\n")


KINDS = tuple(kind.value for kind in RouteKind)
PRECISIONS = ("fp32", "fp16")


def parse_manifest(data: Any, where: str = MANIFEST_NAME) -> Manifest:
    """Strictly parse manifest JSON data; every error names ``where`` and the field path."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: expected a JSON object")
    version = data.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise BundleError(f"{where}: schema_version: unsupported version {version!r:.40} "
                          f"(this dsnet-export reads version {SCHEMA_VERSION})")
    try:
        manifest = parse_record(Manifest, data, where)
        _check_arch(manifest, where)
        _check_consistency(manifest, where)
    except RecursionError:
        raise BundleError(f"{where}: nested too deeply") from None
    return manifest


def _check_arch(m: Manifest, where: str) -> None:
    """``arch`` must rebuild into a valid architecture spec (every field present, of its type), so a
    broken one fails here naming the field instead of as a KeyError in whatever reads it later."""
    from ..arch.spec import ArchSpec
    from ..errors import SpecError

    try:
        spec = ArchSpec.from_dict(m.arch, where="", path="arch")
    except SpecError as exc:
        text = str(exc)
        raise BundleError(f"{where}: {text if text.startswith('arch') else f'arch: {text}'}") from None
    if len(m.gate.routes) != spec.num_routes:
        raise BundleError(f"{where}: gate.routes: has {len(m.gate.routes)} routes but arch.gate.routes has "
                          f"{spec.num_routes}")


def _check_consistency(m: Manifest, where: str) -> None:
    def fail(path: str, message: str) -> None:
        raise BundleError(f"{where}: {path}: {message}")

    def count(path: str, value, low: int = 0) -> None:
        if not (isinstance(value, int) and low <= value < INT_LIMIT):
            fail(path, f"expected an integer >= {low}, got {value!r:.40}")

    def dims(path: str, values: list[int], n: int) -> None:
        if len(values) != n or not all(isinstance(v, int) and 1 <= v <= 1 << 20 for v in values):
            fail(path, f"expected {n} positive sizes, got {values!r:.60}")

    dims("input.shape", m.input.shape, 3)
    dims("gate.features_shape", m.gate.features_shape, 3)
    if m.input.layout != "NCHW" or m.input.dtype != "float32":
        fail("input", f"layout {m.input.layout!r:.20} and dtype {m.input.dtype!r:.20}: only NCHW float32 is supported")
    for name in ("mean", "std"):
        values = getattr(m.input, name)
        if len(values) != m.input.shape[0] or not all(math.isfinite(v) and abs(v) < 1e30 for v in values):
            fail(f"input.{name}", f"expected {m.input.shape[0]} finite numbers (one per channel), got {values!r:.60}")
    if not all(v != 0 for v in m.input.std):
        fail("input.std", "a channel's std is 0")
    if m.input.resize is not None:
        count("input.resize", m.input.resize, 1)
    count("gate.macs", m.gate.macs)
    for i, r in enumerate(m.routes):
        count(f"routes[{i}].macs", r.macs)
        count(f"routes[{i}].params", r.params)
        for j, w in enumerate(r.widths):
            count(f"routes[{i}].widths[{j}]", w, 1)
        if r.index != i:
            fail(f"routes[{i}].index", f"is {r.index}, expected {i} (routes are listed in index order)")
        if r.kind not in KINDS:
            fail(f"routes[{i}].kind", f"unknown kind {r.kind!r} (one of {', '.join(KINDS)})")
        if (r.kind == RouteKind.GATE) != (r.gate_index is not None):
            fail(f"routes[{i}].gate_index", "is set exactly for routes of kind 'gate'")
        expected_input = m.input.name if r.kind == RouteKind.FIXED else m.gate.features
        if r.input != expected_input:
            fail(f"routes[{i}].input", f"is {r.input!r}, expected {expected_input!r} for a {r.kind} route")
    if m.labels and len(m.labels) != m.arch.get("num_classes"):
        fail("labels", f"has {len(m.labels)} names for {m.arch.get('num_classes')!r} classes")
    if len(m.gate.routes) < 2:
        fail("gate.routes", "needs at least two routes")
    for g, index in enumerate(m.gate.routes):
        if not 0 <= index < len(m.routes) or m.routes[index].gate_index != g:
            fail(f"gate.routes[{g}]", f"must name the route whose gate_index is {g}")
    for path, name in [("gate.file", m.gate.file), ("weights", m.weights),
                       *((f"routes[{i}].file", r.file) for i, r in enumerate(m.routes))]:
        if name not in m.files:
            fail(path, f"{name!r} is not listed in files")
    engines = {m.gate.file, *(r.file for r in m.routes)}
    tags = [p.tag for p in m.trt]
    for i, plans in enumerate(m.trt):
        where_plan = f"trt[{i}]"
        if tags.count(plans.tag) > 1:
            fail(f"{where_plan}.tag", f"{plans.tag!r} appears more than once")
        if plans.precision not in PRECISIONS:
            fail(f"{where_plan}.precision", f"unknown precision {plans.precision!r} (one of {', '.join(PRECISIONS)})")
        if set(plans.plans) != engines or set(plans.variants) != engines:
            fail(f"{where_plan}.plans", "needs exactly one plan and one variant hash per engine file")
        for engine, plan in plans.plans.items():
            if not plan.startswith(f"trt/{plans.tag}/") or plan not in m.files:
                fail(f"{where_plan}.plans[{engine!r}]", f"{plan!r} must be a listed file under trt/{plans.tag}/")
        if not 1 <= plans.opt_batch <= plans.max_batch:
            fail(f"{where_plan}.opt_batch", "must be between 1 and max_batch")
    names = [f.format for f in m.formats]
    for i, converted in enumerate(m.formats):
        where_format = f"formats[{i}]"
        if converted.format not in FORMATS:
            fail(f"{where_format}.format", f"unknown format {converted.format!r} (one of {', '.join(FORMATS)})")
        if names.count(converted.format) > 1:
            fail(f"{where_format}.format", f"{converted.format!r} appears more than once")
        count(f"{where_format}.max_batch", converted.max_batch, 1)
        if set(converted.engines) != engines:
            fail(f"{where_format}.engines", "needs exactly one converted file per engine file")
        for engine, file in converted.engines.items():
            if not file.startswith(f"{converted.format}/") or file not in m.files:
                fail(f"{where_format}.engines[{engine!r}]",
                     f"{file!r} must be a listed file under {converted.format}/")
    for name, entry in m.files.items():
        digest_ok = len(entry.sha256) == 64 and all(c in "0123456789abcdef" for c in entry.sha256)
        if not (0 <= entry.size < INT_LIMIT and digest_ok):
            fail(f"files[{name!r}]", "needs a non-negative size and a 64-digit lower-case sha256")
