"""``export-format``: a bundle's engines in another runtime's own format, beside its ONNX engines.

Each engine of the bundle (the gate: image -> features, gate logits; each route: features -> logits; a fixed
route: image -> logits) is converted from a torch supernet rebuilt from the bundle's own weights, so no checkpoint
is needed and the converted engines compute exactly what the ONNX engines compute.  Every converted engine is run
against its torch module before anything is written (the tolerance of ``export.config``); the files land in
``<format>/`` and are recorded in the manifest with sizes and hashes, the bundle updated atomically.

LiteRT (``litert``): converted by ``litert-torch`` with a dynamic batch dimension (1..``max_batch``); the example
batch is 2 because torch.export specialises a batch of 1.  The gate's logits leave the engine as [N, 1, 1, R]: a
flatten would become a reshape with the example's batch baked in, which XNNPACK then refuses at every other batch.
The LiteRT backend reshapes them.  Converted engines carry their own weights (BatchNorm folded per width).
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from ..arch import ArchSpec, RouteKind
from ..errors import DsnetError
from ..optional import require
from ..runtime.bundle import load_bundle
from ..runtime.compare import EngineDiff, Tolerance, check_diffs, diff_row
from ..runtime.manifest import FORMATS, FormatEngines, Manifest
from ..runtime.weights import map_weights
from .config import export_config
from .from_bundle import supernet_from_bundle
from .update import rewrite_bundle

#: How many samples the parity check runs through each converted engine (not the example's 2).
CHECK_BATCH = 3


class GateEngine(torch.nn.Module):
    """image -> (features, gate logits as [N, 1, 1, R]), the bundle's gate engine for a converter."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        features, hidden = self.net.pre_gate(x, 0)
        return features, self.net.gate_block.gate.gate(hidden).permute(0, 2, 3, 1)


class RouteEngine(torch.nn.Module):
    """features -> logits of one route (``full``: image -> logits, a fixed route's whole network)."""

    def __init__(self, net, route, full: bool = False):
        super().__init__()
        self.net, self.route, self.full = net, route, full

    def forward(self, x):
        if self.full:
            return self.net(x, self.route)
        return self.net.classify(self.net.post_gate(x, self.route))


@dataclass(frozen=True)
class FormatReport:
    bundle: Path
    engines: FormatEngines
    sizes: dict[str, int]
    seconds: dict[str, float]
    parity: list[EngineDiff]


def export_format(bundle_dir: str | os.PathLike, fmt: str = "litert", *, max_batch: int = 64,
                  progress: bool = True) -> FormatReport:
    """Convert every engine of the bundle at ``bundle_dir`` to ``fmt`` and record them (replacing an earlier
    conversion to the same format)."""
    if fmt not in CONVERTERS:
        raise DsnetError(f"format= must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 2 <= max_batch <= 4096:
        raise DsnetError(f"max_batch= must be an integer in 2..4096, got {max_batch!r}")
    convert, run, converter = CONVERTERS[fmt]
    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    spec = ArchSpec.from_dict(m.arch, where=f"{bundle.root}: manifest arch")
    net = supernet_from_bundle(spec, map_weights(bundle.weights_path))
    tolerance = export_config(spec).tolerance
    rng = np.random.default_rng(0)
    built, sizes, seconds, parity = {}, {}, {}, []
    engines = _engines(net, m)
    targets = {file: f"{fmt}/{Path(file).stem}.{EXTENSIONS[fmt]}" for file in engines}
    bar = _progress(len(engines), progress, fmt)
    for file, (module, sample_shape, kind) in engines.items():
        bar.set_description(file)
        started = time.perf_counter()
        example = torch.from_numpy(rng.standard_normal((2, *sample_shape)).astype(np.float32))
        data = convert(module, example, max_batch)
        seconds[file] = time.perf_counter() - started
        x = rng.standard_normal((CHECK_BATCH, *sample_shape)).astype(np.float32)
        with torch.no_grad():
            expected = [t.numpy() for t in _as_tuple(module(torch.from_numpy(x)))]
        actual = run(data, x)
        parity.append(_diff(file, kind, expected, actual, tolerance))
        built[targets[file]] = data
        sizes[file] = len(data)
        bar.update()
    bar.close()
    check_diffs(f"{fmt} engines vs the torch supernet", parity)  # before anything is written
    record = FormatEngines(format=fmt, converter=converter(), max_batch=max_batch, shares_weights=False,
                           engines=targets)
    old = m.format_engines(fmt)
    stale = set(old.engines.values()) if old else set()
    rewrite_bundle(bundle.root, m, built, stale, lambda files: replace(
        m, files=files, formats=[f for f in m.formats if f.format != fmt] + [record]))
    return FormatReport(bundle.root, record, sizes, seconds, parity)


def _engines(net, m: Manifest) -> dict[str, tuple[torch.nn.Module, tuple[int, ...], str]]:
    """engine file -> (torch module, one sample's input shape, what it is), in manifest order."""
    engines = {m.gate.file: (GateEngine(net).eval(), tuple(m.input.shape), "gate")}
    for r in m.routes:
        full = r.kind == RouteKind.FIXED
        shape = tuple(m.input.shape) if full else tuple(m.gate.features_shape)
        engines[r.file] = (RouteEngine(net, r.spec_route(net.spec), full).eval(), shape, r.name)
    return engines


def _as_tuple(out) -> tuple:
    return out if isinstance(out, tuple) else (out,)


def _diff(file: str, what: str, expected: list[np.ndarray], actual: list[np.ndarray],
          tolerance: Tolerance) -> EngineDiff:
    if len(expected) != len(actual) or any(a.shape != e.shape for a, e in zip(actual, expected)):
        raise DsnetError(f"{file}: the converted engine gives outputs of shapes {[a.shape for a in actual]}, "
                         f"expected {[e.shape for e in expected]}")
    rows = [diff_row(file, what, e, a.astype(np.float32), tolerance) for e, a in zip(expected, actual)]
    return max(rows, key=lambda d: d.max_abs / d.limit if d.limit > 0 else float("inf"))


# -- LiteRT --------------------------------------------------------------------------------------------------
def _convert_litert(module: torch.nn.Module, example: torch.Tensor, max_batch: int) -> bytes:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the converter's C++ info lines are not for our users
    with warnings.catch_warnings():  # its own deprecation noise on import, likewise
        warnings.simplefilter("ignore")
        litert_torch = require("litert_torch", "export-format --format litert")
    litert_torch.config.show_progress = False
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    with tempfile.TemporaryDirectory(prefix="dsnet-litert-") as tmp:
        path = Path(tmp) / "engine.tflite"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            litert_torch.convert(module, (example,), dynamic_shapes=({0: batch},)).export(str(path))
        return path.read_bytes()


def _run_litert(data: bytes, x: np.ndarray) -> list[np.ndarray]:
    from ..runtime.backends.litert.engine import LiteRtEngine

    return LiteRtEngine(data, threads=1)(x)


def _litert_version() -> str:
    return f"litert-torch {metadata.version('litert-torch')}"


#: format -> (convert(module, example, max_batch) -> bytes, run(bytes, x) -> outputs, converter name and version)
CONVERTERS: dict[str, tuple[Callable, Callable, Callable[[], str]]] = {
    "litert": (_convert_litert, _run_litert, _litert_version),
}
EXTENSIONS = {"litert": "tflite"}


def _progress(total: int, enabled: bool, fmt: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="engine", desc=fmt, disable=not enabled, leave=False)
