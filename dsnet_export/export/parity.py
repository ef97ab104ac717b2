"""Parity of exported engines with the torch supernet, through the one comparison routine
(``runtime.compare``): the supernet is the reference, the bundle's engines (run by the real
dispatcher, each route forced) the candidate.  Used by ``build`` (a self-check before the bundle is
swapped in) and by ``verify --checkpoint``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..model import Supernet
from ..runtime.compare import DispatcherOutputs, EngineDiff, EngineOutputs, compare_engines
from ..runtime.dispatcher import Dispatcher
from ..runtime.manifest import Manifest, RouteInfo
from .config import export_config

#: fp32 agreement of ONNX Runtime with torch.


class SupernetOutputs:
    """The torch supernet as engine outputs: the gate's logits and each manifest route's logits."""

    def __init__(self, model: Supernet):
        self.model = model
        self.dtype = next(model.parameters()).dtype

    @torch.no_grad()
    def gate_logits(self, x: np.ndarray) -> np.ndarray:
        return self.model.gate_logits(torch.from_numpy(x).to(self.dtype)).float().numpy()

    @torch.no_grad()
    def route_logits(self, route: RouteInfo, x: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(x).to(self.dtype), route.spec_route(self.model.spec)).float().numpy()


class NonFiniteAsNaN:
    """Engine outputs with every NaN or inf made NaN, so a row with a non-finite output on either side has a NaN
    difference: it fails and reads "non-finite output" (``format_diffs``), never "nan > nan" or "inf"."""

    def __init__(self, outputs: EngineOutputs):
        self.outputs = outputs

    def gate_logits(self, x: np.ndarray) -> np.ndarray:
        return _nan_if_not_finite(self.outputs.gate_logits(x))

    def route_logits(self, route: RouteInfo, x: np.ndarray) -> np.ndarray:
        return _nan_if_not_finite(self.outputs.route_logits(route, x))


def _nan_if_not_finite(array: np.ndarray) -> np.ndarray:
    finite = np.isfinite(array)
    return array if finite.all() else np.where(finite, array, np.float32(np.nan))


def compare_with_supernet(root: Path, manifest: Manifest, model: Supernet, x: np.ndarray) -> list[EngineDiff]:
    """Every engine of the bundle at ``root`` vs ``model``, engine by engine (a non-finite output on either side
    fails its row as "non-finite output")."""
    with Dispatcher.load(root, verify=False, lazy=True) as dispatcher:
        return compare_engines(manifest, NonFiniteAsNaN(SupernetOutputs(model)),
                               NonFiniteAsNaN(DispatcherOutputs(dispatcher)), x, export_config(model.spec).tolerance)


def random_input(manifest: Manifest, batch: int = 3, seed: int = 0) -> np.ndarray:
    """A normalised-looking random batch of the bundle's input shape."""
    return np.random.default_rng(seed).standard_normal((batch, *manifest.input.shape)).astype(np.float32)
