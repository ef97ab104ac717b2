"""``build_bundle``: supernet -> gate engine + one engine per route + one shared weights file.

Steps: choose routes -> dry-run every engine to learn the largest prefix each tensor needs ->
write those prefixes once to ``weights.safetensors`` -> emit each ONNX with external data into
that file and ``Slice`` for smaller prefixes -> check (onnx.checker, ONNX Runtime vs torch) ->
manifest with sizes and hashes -> swap the finished directory into place.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from .. import __version__
from ..arch import (
    ArchSpec,
    EnginePart,
    Route,
    RouteKind,
    RouteLike,
    gate_head_macs,
    get_arch,
    pre_gate_cost,
    resolve_route,
    route_cost,
)
from ..errors import CheckpointError, DsnetError
from ..graphs.emit import FEATURES, GATE_LOGITS, IMAGE, LOGITS, emit_engine, feature_shape
from ..graphs.graph import EmbeddedBinding, ExternalBinding, Graph, PlanBinding
from ..model import Supernet, load_supernet
from ..model.checkpoint import training_data
from ..runtime.budget import carry_over_budget
from ..runtime.bundle import engine_identity, load_bundle, sha256_file
from ..runtime.compare import EngineDiff, check_diffs
from ..runtime.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    FileEntry,
    GateInfo,
    InputInfo,
    Manifest,
    RouteInfo,
    write_manifest,
)
from .atomic import atomic_directory
from .config import DEFAULT
from .parity import compare_with_supernet, random_input
from .weights import write_weights

DEFAULT_OPSET = DEFAULT.opset
SUPPORTED_OPSETS = range(13, 22)
WEIGHTS_FILE = "weights.safetensors"
GATE_FILE = "gate.onnx"
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "defaults"
DEFAULT_MODEL = SHIPPED_WEIGHTS / "ds_mbnet_digits.safetensors"
DEFAULT_NAME = "dsnet-digits"


def shipped_weights(arch: str) -> Path | None:
    """The trained weights the package ships for architecture ``arch`` (``defaults/<arch>.safetensors``), if any."""
    path = SHIPPED_WEIGHTS / f"{arch}.safetensors"
    return path if path.is_file() else None


def random_supernet(arch: str | ArchSpec, seed: int = 0) -> Supernet:
    """A supernet of ``arch`` with its initial weights (seeded): for timing an architecture nobody has trained
    yet, never for predictions."""
    spec = arch if isinstance(arch, ArchSpec) else get_arch(arch)
    torch.manual_seed(seed)
    return Supernet(spec).eval()


@dataclass(frozen=True)
class Engine:
    """One ONNX file to emit: which part of the network, at which route's widths."""

    file: str
    part: EnginePart
    route: Route


@dataclass(frozen=True)
class SizeReport:
    bundle_bytes: int           # manifest + weights + every engine the dispatcher uses
    widest_route_bytes: int     # float32 bytes of the widest route's own dense tensors
    standalone_bytes: int       # sum of self-contained single-file exports of every route

    @property
    def vs_widest(self) -> float:
        return self.bundle_bytes / self.widest_route_bytes

    @property
    def vs_standalone(self) -> float:
        return self.bundle_bytes / self.standalone_bytes


@dataclass(frozen=True)
class BuildReport:
    path: Path
    manifest: Manifest
    sizes: SizeReport
    parity: list[EngineDiff]
    seconds: float
    #: What became of the previous build's budget.json (kept or dropped, and why); None if it had none.
    budget: str | None = None


def select_routes(spec: ArchSpec, routes: Sequence[RouteLike] | None) -> list[Route]:
    """The gate's routes first (all of them: the gate can pick any), then extra forced/fixed ones."""
    chosen = list(resolve_route(spec, g) for g in range(spec.num_routes))
    for r in routes or []:
        route = resolve_route(spec, r)
        if all(route.choices != c.choices for c in chosen):
            chosen.append(route)
    if routes:
        asked = {resolve_route(spec, r).choices for r in routes}
        missing = [r.name for r in chosen[: spec.num_routes] if r.choices not in asked]
        if missing:
            raise DsnetError(f"routes= must include every route the gate can choose; missing: {', '.join(missing)} "
                             f"(add forced or fixed routes after them, e.g. 0,1,2,3,uniform:8,largest)")
    return chosen


def plan_engines(spec: ArchSpec, routes: list[Route]) -> list[Engine]:
    engines = [Engine(GATE_FILE, EnginePart.GATE, routes[0])]
    for k, route in enumerate(routes):
        engines.append(Engine(f"route_{k}.onnx", route.kind(spec).engine_part, route))
    return engines


def state_arrays(model: Supernet) -> dict[str, np.ndarray]:
    """Float32 numpy copies of the supernet's tensors (BatchNorm batch counters dropped)."""
    return {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def check_finite_weights(sources: dict[str, np.ndarray], needed: dict | None = None) -> None:
    """``CheckpointError`` naming the tensors (the first few and a count) that hold NaN or inf in the part the
    bundle stores (``needed[key]``: the prefix shape of each stored tensor; None: every tensor whole)."""
    bad = []
    for key in sorted(sources if needed is None else needed):
        array = sources[key] if needed is None else sources[key][tuple(slice(0, s) for s in needed[key])]
        count = int(array.size - np.count_nonzero(np.isfinite(array)))
        if count:
            bad.append(f"{key} ({count} of {array.size} values)")
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(f"the weights hold NaN or infinite values in {len(bad)} tensor"
                              f"{'s' if len(bad) > 1 else ''}: {shown}; a bundle of them would output NaN")


def default_output(name: str) -> Path:
    return Path("engines") / name


def build_bundle(checkpoint: str | os.PathLike | None = None, out: str | os.PathLike | None = None, *,
                 model: Supernet | None = None, arch: str | ArchSpec | None = None,
                 routes: Sequence[RouteLike] | None = None, input_size: tuple[int, int] | None = None,
                 opset: int = DEFAULT_OPSET, standalone: bool = False, check: bool = True,
                 progress: bool = True, name: str | None = None, ema: bool = False) -> BuildReport:
    """Export a supernet checkpoint (or a loaded ``model``) as a bundle directory.

    With neither ``checkpoint`` nor ``model`` the embedded default model is exported to
    ``engines/dsnet-digits``.  ``check`` runs every engine in ONNX Runtime against the torch
    supernet before the bundle replaces anything; a mismatch fails the build.
    """
    start = time.perf_counter()
    if opset not in SUPPORTED_OPSETS:
        lo, hi = SUPPORTED_OPSETS.start, SUPPORTED_OPSETS.stop - 1
        raise DsnetError(f"opset={opset} is not supported (use {lo}..{hi})")
    if model is None:
        if checkpoint is None and arch is not None:
            name_of_arch = arch if isinstance(arch, str) else arch.name
            checkpoint = shipped_weights(name_of_arch)
            if checkpoint is None:
                shipped = sorted(p.stem for p in SHIPPED_WEIGHTS.glob("*.safetensors"))
                raise DsnetError(f"no trained weights ship for {name_of_arch!r} (shipped: {', '.join(shipped)}); "
                                 f"pass checkpoint=PATH, or model=random_supernet({name_of_arch!r}) to time the "
                                 f"untrained architecture")
            name = name or name_of_arch.replace("_", "-")
        if checkpoint is None:
            if not DEFAULT_MODEL.is_file():
                raise DsnetError(f"the embedded default model is missing ({DEFAULT_MODEL}); pass checkpoint=PATH")
            checkpoint, name = DEFAULT_MODEL, name or DEFAULT_NAME
        model = load_supernet(checkpoint, arch, ema=ema)
    spec = model.spec
    name = name or _name_of(checkpoint) or spec.name
    hw = _input_hw(spec, input_size)
    chosen = select_routes(spec, routes)
    engines = plan_engines(spec, chosen)
    sources = state_arrays(model)
    target = Path(out) if out is not None else default_output(name)
    trained = training_data(checkpoint) if checkpoint is not None else {}
    if input_size is not None and tuple(input_size) != (spec.input.height, spec.input.width):
        warnings.warn(f"input_size={input_size[0]},{input_size[1]}: the checkpoint was trained at "
                      f"{spec.input.height}x{spec.input.width}; accuracy at another size is not what training "
                      f"measured", UserWarning, stacklevel=2)

    plan = PlanBinding(sources)
    for engine in engines:
        emit_engine(Graph(engine.file, plan), spec, engine.route, engine.part, hw, opset)
    check_finite_weights(sources, plan.needed)  # before anything is written, with or without check

    bar = _progress(len(engines) + 2 + int(check) + int(standalone), progress)
    with atomic_directory(target) as tmp:
        bar.set_description(WEIGHTS_FILE)
        stored = write_weights(tmp / WEIGHTS_FILE, sources, plan.needed)
        os.chmod(tmp / WEIGHTS_FILE, 0o644)
        bar.update()
        binding = ExternalBinding(stored, WEIGHTS_FILE)
        for engine in engines:
            bar.set_description(engine.file)
            model_proto = emit_engine(Graph(engine.file, binding), spec, engine.route, engine.part, hw, opset)
            engine_identity(model_proto, spec, engine.part, engine.route)  # what it is, hashed with it
            onnx.save_model(model_proto, str(tmp / engine.file))
            onnx.checker.check_model(str(tmp / engine.file), full_check=True)
            bar.update()
        standalone_sizes = []
        for k, route in enumerate(chosen):
            graph = Graph(f"standalone_{k}", EmbeddedBinding(sources))
            proto = emit_engine(graph, spec, route, EnginePart.FULL, hw, opset)
            standalone_sizes.append(proto.ByteSize())
            if standalone:
                (tmp / "standalone").mkdir(exist_ok=True)
                onnx.save_model(proto, str(tmp / "standalone" / f"route_{k}.onnx"))
        if standalone:
            bar.update()
        bar.set_description(MANIFEST_NAME)
        manifest = _write_manifest(tmp, spec, name, chosen, engines, hw, checkpoint, trained)
        bar.update()
        parity: list[EngineDiff] = []
        if check:
            bar.set_description("checking against torch")
            parity = compare_with_supernet(tmp, manifest, model, random_input(manifest))
            bar.update()
            check_diffs("exported engines disagree with the torch supernet", parity)
        load_bundle(tmp)  # the runtime's own reading of what we wrote
        budget = carry_over_budget(target, tmp) if target.is_dir() else None
        bar.close()
    sizes = _size_report(target, manifest, spec, chosen, hw, standalone_sizes)
    return BuildReport(target, manifest, sizes, parity, time.perf_counter() - start, budget)


def _name_of(checkpoint) -> str | None:
    if checkpoint is None:
        return None
    stem = re.sub(r"(\.pth)?\.(tar|pth|pt|safetensors|bin)$", "", Path(checkpoint).name)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem) or None


def _input_hw(spec: ArchSpec, input_size: tuple[int, int] | None) -> tuple[int, int]:
    if input_size is None:
        return spec.input.height, spec.input.width
    h, w = input_size
    if not all(isinstance(v, int) and 8 <= v <= 4096 for v in (h, w)):
        raise DsnetError(f"input_size={h},{w}: height and width must be integers in 8..4096")
    return h, w


def _write_manifest(root: Path, spec: ArchSpec, name: str, routes: list[Route], engines: list[Engine],
                    hw: tuple[int, int], checkpoint, trained: dict) -> Manifest:
    inp = spec.input
    resize = None if inp.resize is None else round(inp.resize * hw[0] / inp.height)
    gate_routes = [k for k, r in enumerate(routes) if r.gate_index is not None]
    route_infos = []
    for k, (route, engine) in enumerate(zip(routes, engines[1:])):
        kind, cost = route.kind(spec), route_cost(spec, route, hw)
        route_infos.append(RouteInfo(index=k, name=route.name, kind=kind.value, gate_index=route.gate_index,
                                     widths=list(route.widths(spec)), macs=cost.macs, params=cost.params,
                                     file=engine.file, output=LOGITS,
                                     input=IMAGE if kind is RouteKind.FIXED else FEATURES))
    files = [WEIGHTS_FILE, *(e.file for e in engines)]
    if (root / "standalone").is_dir():
        files += sorted(f"standalone/{p.name}" for p in (root / "standalone").iterdir())
    source = {}
    if checkpoint is not None:
        source = {"checkpoint": Path(checkpoint).name, "checkpoint_sha256": sha256_file(Path(checkpoint))}
    if isinstance(trained.get("dataset"), str):
        source["training_data"] = trained["dataset"]
    if isinstance(trained.get("split_seed"), int):
        source["split_seed"] = str(trained["split_seed"])
    classes = trained.get("classes")
    labels = [str(c) for c in classes] if isinstance(classes, list) and len(classes) == spec.num_classes else []
    manifest = Manifest(
        schema_version=SCHEMA_VERSION, tool="dsnet-export", tool_version=__version__, name=name, arch=spec.to_dict(),
        input=InputInfo(name=IMAGE, shape=[inp.channels, *hw], layout="NCHW", dtype="float32", mean=list(inp.mean),
                        std=list(inp.std), resize=resize, interpolation=inp.interpolation),
        gate=GateInfo(file=GATE_FILE, input=IMAGE, features=FEATURES, logits=GATE_LOGITS,
                      features_shape=list(feature_shape(spec, routes[0], hw)), routes=gate_routes,
                      macs=pre_gate_cost(spec, hw).macs + gate_head_macs(spec, hw)),
        routes=route_infos, weights=WEIGHTS_FILE,
        files={f: FileEntry(size=(root / f).stat().st_size, sha256=sha256_file(root / f)) for f in files},
        source=source, labels=labels,
    )
    write_manifest(root, manifest)
    return manifest


def _size_report(root: Path, manifest: Manifest, spec: ArchSpec, routes: list[Route], hw,
                 standalone_sizes: list[int]) -> SizeReport:
    used = [manifest.weights, manifest.gate.file, *(r.file for r in manifest.routes)]
    bundle = (root / MANIFEST_NAME).stat().st_size + sum(manifest.files[f].size for f in used)
    widest = max(routes, key=lambda r: route_cost(spec, r, hw).params)
    return SizeReport(bundle, _dense_bytes(spec, widest, hw), sum(standalone_sizes))


def _dense_bytes(spec: ArchSpec, route: Route, hw) -> int:
    """float32 bytes of a route's dense tensors: parameters plus buffers (BatchNorm running mean/var)."""
    cost = route_cost(spec, route, hw)
    return 4 * (cost.params + cost.buffers)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="step", leave=False)

