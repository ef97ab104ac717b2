"""The routing step of a dynamic network, outside any one process: which route each sample takes, the rows of a
batch grouped by route, and the route outputs put back in input order.

The in-process dispatcher, the Triton routing model and the Ray Serve ingress all choose routes with
``RouteTable.choose`` (the dispatcher's own rule: the argmax of the gate logits plus the gate bias), so the three
give the same routes and, the engines being the same files, the same logits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DsnetError, InputError
from ..runtime.budget import BUDGET_NAME, load_budget
from ..runtime.bundle import Bundle, load_bundle
from ..runtime.manifest import Manifest


@dataclass(frozen=True)
class RouteGroup:
    """The rows of a batch (``rows``, ascending) that the gate sent to manifest route ``route``."""

    route: int
    rows: np.ndarray


@dataclass(frozen=True)
class RouteTable:
    """What routing needs from a bundle: the gate outputs' routes, the bias, the routes' files and costs."""

    gate_to_route: np.ndarray  # gate output g -> manifest route index
    bias: np.ndarray  # float32, one per gate output (zeros without a budget)
    route_files: tuple[str, ...]  # by manifest route index
    route_names: tuple[str, ...]
    route_macs: np.ndarray  # int64, by manifest route index
    num_classes: int
    input_shape: tuple[int, ...]  # [C, H, W]
    features_shape: tuple[int, ...]  # [C, H, W] of the gate's features

    @classmethod
    def from_manifest(cls, manifest: Manifest, bias=None) -> RouteTable:
        gates = len(manifest.gate.routes)
        value = np.zeros(gates, np.float32) if bias is None else np.asarray(bias, np.float32)
        if value.shape != (gates,) or not np.isfinite(value).all():
            raise DsnetError(f"gate bias needs {gates} finite numbers, got {bias!r:.200}")
        return cls(np.array(manifest.gate.routes, np.int64), value,
                   tuple(r.file for r in manifest.routes), tuple(r.name for r in manifest.routes),
                   np.array([r.macs for r in manifest.routes], np.int64), int(manifest.arch["num_classes"]),
                   tuple(manifest.input.shape), tuple(manifest.gate.features_shape))

    @classmethod
    def from_bundle(cls, bundle: Bundle | str | os.PathLike, budget: bool | str | os.PathLike | None = None,
                    *, verify: bool = False) -> RouteTable:
        """The table of a bundle; ``budget``: True for ``<bundle>/budget.json``, a path, or None (no bias) --
        as ``Dispatcher.load`` takes it."""
        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle, verify=verify)
        bias = None
        if budget:
            path = bundle.root / BUDGET_NAME if budget is True else Path(budget)
            bias = load_budget(path, bundle).bias
        return cls.from_manifest(bundle.manifest, bias)

    def choose(self, gate_logits: np.ndarray) -> np.ndarray:
        """Manifest route index per row of ``gate_logits`` [N, gate outputs] (int64)."""
        return self.gate_to_route[np.argmax(gate_logits + self.bias, axis=1)]

    def groups(self, chosen: np.ndarray) -> list[RouteGroup]:
        """The rows of each route that occurs in ``chosen``, routes in index order."""
        counts = np.bincount(chosen, minlength=len(self.route_files))
        return [RouteGroup(int(k), np.flatnonzero(chosen == k)) for k in np.flatnonzero(counts)]

    def assemble(self, n: int, parts: list[tuple[RouteGroup, np.ndarray]]) -> np.ndarray:
        """Logits [n, classes] in input order from each group's route output (rows in the group's order)."""
        logits = np.empty((n, self.num_classes), np.float32)
        filled = 0
        for group, out in parts:
            if out.shape != (len(group.rows), self.num_classes):
                raise DsnetError(f"route {self.route_names[group.route]} returned shape {list(out.shape)} for "
                                 f"{len(group.rows)} rows; expected [{len(group.rows)}, {self.num_classes}]")
            logits[group.rows] = out
            filled += len(group.rows)
        if filled != n:
            raise DsnetError(f"route outputs cover {filled} of {n} rows")
        return logits


def check_images(x, input_shape: tuple[int, ...]) -> np.ndarray:
    """``x`` as the engines take it ([N, C, H, W] float32, finite, C-contiguous) or an InputError; both servers
    check each request with it, so a bad one fails alone."""
    dims = ", ".join(map(str, input_shape))
    if isinstance(x, np.ma.MaskedArray) or not isinstance(x, np.ndarray):
        raise InputError(f"input must be a numpy array [N, {dims}] float32, got {type(x).__name__}")
    if x.dtype.kind == "f" and x.dtype.itemsize == 4 and x.dtype != np.float32:
        x = x.astype(np.float32)  # float32 in the other byte order
    if x.dtype != np.float32:
        raise InputError(f"input dtype must be float32, got {x.dtype}")
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape):
        raise InputError(f"input shape {list(x.shape)} does not match the bundle's [N, {dims}] (NCHW)")
    if x.shape[0] == 0:
        raise InputError("input batch is empty")
    if not np.isfinite(x).all():
        raise InputError("input contains NaN or infinite values")
    return np.ascontiguousarray(x)


def split_rows(n: int, limit: int | None) -> list[slice]:
    """Slices of at most ``limit`` rows covering ``range(n)`` (one slice when ``limit`` is None)."""
    if limit is None or n <= limit:
        return [slice(0, n)]
    return [slice(i, min(i + limit, n)) for i in range(0, n, limit)]
