"""Parity of exported engines with the torch supernet, run in ONNX Runtime.

Used by ``build`` (a self-check before the bundle is swapped in) and by ``verify``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..model import Supernet
from ..runtime.manifest import Manifest

#: fp32 agreement: |onnx - torch| <= ATOL + RTOL * |torch| (logits of trained nets reach ~20).
ATOL, RTOL = 1e-4, 1e-5


@dataclass(frozen=True)
class ParityRow:
    engine: str
    route: str
    max_abs_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _row(engine: str, route: str, got: np.ndarray, expected: np.ndarray) -> ParityRow:
    diff = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("inf")
    return ParityRow(engine, route, diff, ATOL + RTOL * float(np.max(np.abs(expected))))


@torch.no_grad()
def compare_with_supernet(root: Path, manifest: Manifest, model: Supernet, x: np.ndarray) -> list[ParityRow]:
    """Run gate + every route engine on ``x`` and compare with ``model``, engine by engine."""
    xt = torch.from_numpy(x).to(next(model.parameters()).dtype)
    features, gate_logits = _session(root / manifest.gate.file).run(
        [manifest.gate.features, manifest.gate.logits], {manifest.gate.input: x})
    rows = [_row(manifest.gate.file, "gate", gate_logits, model.gate_logits(xt).float().numpy())]
    for route in manifest.routes:
        session = _session(root / route.file)
        feed = x if route.kind == "fixed" else features
        (logits,) = session.run([route.output], {route.input: feed})
        expected = model(xt, _route_ref(route)).float().numpy()
        rows.append(_row(route.file, route.name, logits, expected))
    return rows


def _route_ref(route) -> int | str:
    return route.gate_index if route.kind == "gate" else route.name


def random_input(manifest: Manifest, batch: int = 3, seed: int = 0) -> np.ndarray:
    """A normalised-looking random batch of the bundle's input shape."""
    return np.random.default_rng(seed).standard_normal((batch, *manifest.input.shape)).astype(np.float32)
