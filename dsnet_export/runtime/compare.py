"""Engine-by-engine comparison of two dispatchers on the same inputs (e.g. TensorRT vs ONNX Runtime CPU)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dispatcher import Dispatcher


@dataclass(frozen=True)
class EngineDiff:
    engine: str
    route: str
    max_abs: float
    max_rel: float   # max |candidate - reference| / max |reference|
    ok: bool


def compare_dispatchers(reference: Dispatcher, candidate: Dispatcher, x: np.ndarray, *, abs_tol: float | None,
                        rel_tol: float | None) -> list[EngineDiff]:
    """Gate logits and every route forced, reference vs candidate; a row fails beyond either tolerance given."""
    def row(engine: str, route: str, ref: np.ndarray, got: np.ndarray) -> EngineDiff:
        max_abs = float(np.max(np.abs(got - ref)))
        max_rel = max_abs / max(float(np.max(np.abs(ref))), 1e-12)
        ok = (abs_tol is None or max_abs <= abs_tol) and (rel_tol is None or max_rel <= rel_tol)
        return EngineDiff(engine, route, max_abs, max_rel, ok)

    m = reference.manifest
    rows = [row(m.gate.file, "gate", reference.gate_logits(x), candidate.gate_logits(x))]
    for route in m.routes:
        rows.append(row(route.file, route.name, reference.run(x, route=route.index).logits,
                        candidate.run(x, route=route.index).logits))
    return rows
