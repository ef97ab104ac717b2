"""One engine-by-engine comparison for every check: ``build``'s parity with the torch supernet, ``verify
--checkpoint``, and ``verify --backend trt`` (TensorRT vs ONNX Runtime CPU).

Both sides are "engine outputs": the gate's logits and each manifest route's logits for a batch.  A
row passes when ``max |candidate - reference| <= atol + rtol * max |reference|``; a failed check raises
``ParityError``, which lists every row in one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import DsnetError
from ..tables import format_table
from .dispatcher import Dispatcher
from .manifest import Manifest, RouteInfo


@dataclass(frozen=True)
class Tolerance:
    """``|candidate - reference| <= atol + rtol * max |reference|`` (logits of trained nets reach ~20)."""

    atol: float
    rtol: float = 0.0

    def limit(self, reference: np.ndarray) -> float:
        return self.atol + self.rtol * float(np.max(np.abs(reference)))


@dataclass(frozen=True)
class EngineDiff:
    engine: str
    route: str
    max_abs: float
    max_rel: float   # max |candidate - reference| / max |reference|
    limit: float     # the tolerance for this row's reference

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.limit


class EngineOutputs(Protocol):
    def gate_logits(self, x: np.ndarray) -> np.ndarray: ...

    def route_logits(self, route: RouteInfo, x: np.ndarray) -> np.ndarray: ...


class DispatcherOutputs:
    """A dispatcher's engines, each route forced."""

    def __init__(self, dispatcher: Dispatcher):
        self.dispatcher = dispatcher

    def gate_logits(self, x: np.ndarray) -> np.ndarray:
        return self.dispatcher.gate_logits(x)

    def route_logits(self, route: RouteInfo, x: np.ndarray) -> np.ndarray:
        return self.dispatcher.run(x, route=route.index).logits


def diff_row(engine: str, route: str, reference: np.ndarray, candidate: np.ndarray,
             tolerance: Tolerance) -> EngineDiff:
    same_shape = reference.shape == candidate.shape
    max_abs = float(np.max(np.abs(candidate - reference))) if same_shape else float("inf")
    max_rel = max_abs / max(float(np.max(np.abs(reference))), 1e-12)
    return EngineDiff(engine, route, max_abs, max_rel, tolerance.limit(reference))


def compare_engines(manifest: Manifest, reference: EngineOutputs, candidate: EngineOutputs, x: np.ndarray,
                    tolerance: Tolerance) -> list[EngineDiff]:
    """The gate and every route of ``manifest``, reference vs candidate, on ``x``."""
    rows = [diff_row(manifest.gate.file, "gate", reference.gate_logits(x), candidate.gate_logits(x), tolerance)]
    for route in manifest.routes:
        rows.append(diff_row(route.file, route.name, reference.route_logits(route, x),
                             candidate.route_logits(route, x), tolerance))
    return rows


def compare_dispatchers(reference: Dispatcher, candidate: Dispatcher, x: np.ndarray,
                        tolerance: Tolerance) -> list[EngineDiff]:
    return compare_engines(reference.manifest, DispatcherOutputs(reference), DispatcherOutputs(candidate), x,
                           tolerance)


def format_diffs(rows: list[EngineDiff]) -> str:
    return format_table(["engine", "route", "max |diff|", "max rel diff", "limit", "ok"],
                        [[r.engine, r.route, "non-finite output" if np.isnan(r.max_abs) else f"{r.max_abs:.2e}",
                          f"{r.max_rel:.2e}", f"{r.limit:.1e}", "yes" if r.ok else "NO"] for r in rows])


class ParityError(DsnetError):
    """Engines that disagree with their reference; the message lists every row."""

    def __init__(self, what: str, rows: list[EngineDiff]):
        self.rows = rows
        bad = sum(not r.ok for r in rows)
        super().__init__(f"{what}: {bad} of {len(rows)} engines beyond tolerance\n{format_diffs(rows)}")


def check_diffs(what: str, rows: list[EngineDiff]) -> list[EngineDiff]:
    """``rows`` if all pass, else ``ParityError``."""
    if not all(r.ok for r in rows):
        raise ParityError(what, rows)
    return rows
