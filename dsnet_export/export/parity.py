"""Parity of exported engines with the torch supernet, run in ONNX Runtime through the dispatcher.

Used by ``build`` (a self-check before the bundle is swapped in) and by ``verify``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..model import Supernet
from ..runtime.dispatcher import Dispatcher
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


def _row(engine: str, route: str, got: np.ndarray, expected: np.ndarray) -> ParityRow:
    diff = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("inf")
    return ParityRow(engine, route, diff, ATOL + RTOL * float(np.max(np.abs(expected))))


@torch.no_grad()
def compare_with_supernet(root: Path, manifest: Manifest, model: Supernet, x: np.ndarray) -> list[ParityRow]:
    """Every engine through the real dispatcher (forced routes) vs ``model``, engine by engine."""
    xt = torch.from_numpy(x).to(next(model.parameters()).dtype)
    with Dispatcher.load(root, verify=False, lazy=True) as dispatcher:
        rows = [_row(manifest.gate.file, "gate", dispatcher.gate_logits(x), model.gate_logits(xt).float().numpy())]
        for route in manifest.routes:
            reference = route.gate_index if route.kind == "gate" else route.name
            rows.append(_row(route.file, route.name, dispatcher.run(x, route=route.index).logits,
                             model(xt, reference).float().numpy()))
    return rows


def random_input(manifest: Manifest, batch: int = 3, seed: int = 0) -> np.ndarray:
    """A normalised-looking random batch of the bundle's input shape."""
    return np.random.default_rng(seed).standard_normal((batch, *manifest.input.shape)).astype(np.float32)
