"""``build --trt``: one TensorRT plan per engine of a bundle, built on the target device.

Each plan is built from the engine's TensorRT variant (``runtime/backends/trt/variant.py``) with an optimization
profile for batches 1..max, weight-stripped by default (``STRIP_PLAN`` + ``REFIT_IDENTICAL``) so
the bundle still stores the weights once; the backend refits it at load from the same variant.
Plans land in ``trt/<device tag>/`` and are recorded in the manifest; the bundle is updated the
same atomic way it is built (a complete new directory, hard-linking the unchanged files, swapped
in at the end).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import DsnetError
from ..export.update import rewrite_bundle
from ..files import write_bytes_atomic
from ..optional import optional
from ..runtime.backends.trt.compat import TrtApi, load_cudart
from ..runtime.backends.trt.cuda import Cuda
from ..runtime.backends.trt.device import DeviceInfo, current_device
from ..runtime.backends.trt.variant import make_variant
from ..runtime.bundle import load_bundle
from ..runtime.manifest import Manifest, TrtPlans
from ..runtime.weights import map_weights
from .profiles import BatchProfile

PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class PlanReport:
    bundle: Path
    device: DeviceInfo
    plans: TrtPlans
    sizes: dict[str, int]
    seconds: dict[str, float]


def build_plans(bundle_dir: str | os.PathLike, *, precision: str = "fp32", max_batch: int = 8,
                opt_batch: int | None = None, workspace_mib: int = 1024, timing_cache: str | os.PathLike | None = None,
                strip: bool = True, progress: bool = True, trt_module=None, cudart_module=None) -> PlanReport:
    """Build and record plans for every engine of the bundle at ``bundle_dir`` on this device.

    ``trt_module``/``cudart_module`` replace the real ``tensorrt`` and CUDA runtime modules (tests).
    """
    if precision not in PRECISIONS:
        raise DsnetError(f"precision= must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if not isinstance(workspace_mib, int) or workspace_mib < 1:
        raise DsnetError(f"workspace_mib= must be a positive number of MiB, got {workspace_mib!r}")
    profile = BatchProfile.make(max_batch, opt_batch)
    api = TrtApi.load(trt_module)
    device = current_device(api, Cuda(load_cudart(cudart_module)))
    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    weights = map_weights(bundle.weights_path)
    engines = [manifest.gate.file, *(r.file for r in manifest.routes)]
    cache = _read_cache(timing_cache)
    logger = api.logger()
    built: dict[str, bytes] = {}
    variants: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for engine in _progress(engines, progress, f"TensorRT {device.tag}"):
        start = time.perf_counter()
        variant = make_variant(manifest, weights, engine, fp16_graph=api.fp16_graph(precision))
        sample_shape = _sample_shape(manifest, variant.input)
        plan, cache = build_plan(api, logger, variant.model, variant.input, profile.shapes(sample_shape),
                                 precision=precision, strip=strip, workspace_bytes=workspace_mib << 20,
                                 timing_cache=cache)
        built[engine], variants[engine] = plan, variant.sha256
        seconds[engine] = time.perf_counter() - start
    if timing_cache is not None and cache:
        _write_atomic(Path(timing_cache), cache)
    plans = TrtPlans(tag=device.tag, tensorrt_version=device.tensorrt_version, gpu=device.gpu,
                     compute_capability=list(device.compute_capability), precision=precision,
                     opt_batch=profile.opt, max_batch=profile.max, stripped=strip,
                     plans={e: f"trt/{device.tag}/{Path(e).stem}.plan" for e in engines}, variants=variants)
    add_plans(bundle.root, manifest, plans, built)
    sizes = {e: len(p) for e, p in built.items()}
    return PlanReport(bundle.root, device, plans, sizes, seconds)


def build_plan(api: TrtApi, logger, model: bytes, input_name: str, shapes, *, precision: str, strip: bool,
               workspace_bytes: int, timing_cache: bytes | None) -> tuple[bytes, bytes | None]:
    """Parse one variant, configure, build; returns (serialized plan, updated timing cache)."""
    trt = api.trt
    builder = trt.Builder(logger)
    network = builder.create_network(api.network_flags())
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise DsnetError("TensorRT's ONNX parser rejected the engine: " + "; ".join(errors))
    config = builder.create_builder_config()
    api.configure(config, precision=precision, strip=strip, workspace_bytes=workspace_bytes)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *shapes)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache or b"")
    config.set_timing_cache(cache, False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise DsnetError("TensorRT failed to build the engine (see its log above)")
    return bytes(plan), bytes(config.get_timing_cache().serialize())


def add_plans(root: Path, manifest: Manifest, plans: TrtPlans, built: dict[str, bytes]) -> Manifest:
    """Write ``built`` under ``trt/<tag>/`` and record them, replacing plans of the same tag, atomically."""
    old = manifest.plans_for(plans.tag)
    stale = set(old.plans.values()) if old else set()
    new_files = {plans.plans[engine]: data for engine, data in built.items()}
    return rewrite_bundle(root, manifest, new_files, stale, lambda files: replace(
        manifest, files=files, trt=[p for p in manifest.trt if p.tag != plans.tag] + [plans]))


def _progress(engines: list[str], enabled: bool, desc: str):
    """A tqdm bar when tqdm is installed; otherwise one stderr line per engine (the documented Jetson
    install, numpy + onnxruntime + TensorRT + cuda-python, has no tqdm, and needs none)."""
    if not enabled:
        return engines
    tqdm = optional("tqdm")
    if tqdm is None:
        return _plain_progress(engines, desc)
    return tqdm.tqdm(engines, unit="engine", desc=desc)


def _plain_progress(engines: list[str], desc: str):
    for i, engine in enumerate(engines, 1):
        print(f"{desc}: {engine} ({i}/{len(engines)})", file=sys.stderr, flush=True)
        yield engine


def _sample_shape(manifest: Manifest, input_name: str) -> tuple[int, ...]:
    if input_name == manifest.gate.features:
        return tuple(manifest.gate.features_shape)
    return tuple(manifest.input.shape)


def _read_cache(path) -> bytes | None:
    if path is None or not Path(path).is_file():
        return None
    return Path(path).read_bytes()


def _write_atomic(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data)
