"""The dispatcher: gate engine once per batch, then each sample's own dense route engine.

Per-sample routing: the gate runs on the whole batch; each sample takes the argmax of its
(biased) gate logits; samples are grouped by route, each route engine runs once on its group,
and the logits are put back in input order.  No masking: a narrow route costs what it says.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DsnetError
from .backends import BACKENDS, Backend
from .budget import BUDGET_NAME, load_budget
from .bundle import Bundle, load_bundle
from .manifest import Manifest, RouteInfo


class Policy(str, enum.Enum):
    """How a batch is routed."""

    PER_SAMPLE = "per-sample"    # every sample its own route (default)
    WHOLE_BATCH = "whole-batch"  # the whole batch on the widest route any sample chose


@dataclass(frozen=True)
class DispatchResult:
    logits: np.ndarray       # [N, num_classes] float32
    routes: np.ndarray       # [N] int64: manifest route index each sample ran through
    macs: np.ndarray         # [N] int64: MAdds of that route
    gate_logits: np.ndarray | None  # [N, gate routes], before the bias; None for a fixed route


class Dispatcher:
    """Runs a bundle.  Use ``Dispatcher.load``; close it (or use ``with``)."""

    def __init__(self, bundle: Bundle, backend: Backend, *, lazy: bool, policy: Policy | str,
                 gate_bias: np.ndarray | None):
        self.bundle = bundle
        self.manifest: Manifest = bundle.manifest
        self.backend = backend
        self.policy = Policy(policy)
        m = self.manifest
        self._route_macs = np.array([r.macs for r in m.routes], np.int64)
        self._gate_to_route = np.array(m.gate.routes, np.int64)
        self._num_classes = int(m.arch["num_classes"])
        self.gate_bias = gate_bias
        backend.load(m.gate.file)
        if not lazy:
            for route in m.routes:
                backend.load(route.file)

    @classmethod
    def load(cls, bundle_dir: str | os.PathLike, providers: list[str] | str | None = None,
             threads: int | None = None, verify: bool = True, *, backend: str = "ort", lazy: bool = False,
             policy: Policy | str = Policy.PER_SAMPLE, budget: bool | str | os.PathLike | None = None,
             share_weights: bool = True, shared_pool: bool = False, device_path: bool = False) -> Dispatcher:
        """Open a bundle.

        ``backend``: 'ort' (ONNX Runtime; ``providers`` 'cpu' by default, 'cuda', 'tensorrt') or 'trt'
        (TensorRT plans built on this device with ``build --trt``).  ``verify``: check every file's
        sha256 first.  ``lazy``: prepare route engines on first use.  ``budget``: True to apply
        ``<bundle>/budget.json`` from ``calibrate``, or a path to one.
        """
        bundle = load_bundle(bundle_dir, verify=verify)
        bias = None
        if budget:
            path = Path(bundle_dir) / BUDGET_NAME if budget is True else Path(budget)
            bias = np.array(load_budget(path, bundle).bias, np.float32)
        engine = _make_backend(backend, bundle, providers, threads, share_weights, shared_pool, device_path)
        try:
            return cls(bundle, engine, lazy=lazy, policy=policy, gate_bias=bias)
        except BaseException:
            engine.close()
            raise

    # -- configuration -------------------------------------------------------------------
    @property
    def routes(self) -> list[RouteInfo]:
        return self.manifest.routes

    @property
    def gate_bias(self) -> np.ndarray:
        """Per-gate-route bias added to the gate logits before the argmax (the compute-budget knob)."""
        return self._gate_bias

    @gate_bias.setter
    def gate_bias(self, bias) -> None:
        n = len(self.manifest.gate.routes)
        try:
            value = np.zeros(n, np.float32) if bias is None else np.asarray(bias, np.float32).reshape(-1)
        except (TypeError, ValueError):
            value = None
        if value is None or value.shape != (n,) or not np.all(np.isfinite(value)):
            raise ValueError(f"gate_bias needs {n} finite numbers (one per gate route), got {bias!r}")
        self._gate_bias = value  # replaced whole: calls in flight keep the array they read

    @property
    def shared_weights(self) -> bool:
        """True when every engine was built from the one shared in-memory copy of the weights."""
        return self.backend.shared_weights

    # -- running -------------------------------------------------------------------------
    def __call__(self, x: np.ndarray, *, policy: Policy | str | None = None) -> DispatchResult:
        return self.run(x, policy=policy)

    def run(self, x: np.ndarray, route: int | str | None = None, *,
            policy: Policy | str | None = None) -> DispatchResult:
        """Route ``x`` [N,C,H,W] float32 by the gate, or force every sample through ``route``
        (a manifest route index or name; fixed routes such as 'largest' run without the gate)."""
        x = self._check_batch(x)
        forced = None if route is None else self._route_info(route)
        limit = self.backend.max_batch or x.shape[0]
        parts = []
        for i in range(0, x.shape[0], limit):  # one chunk unless the backend caps the batch
            with self.backend.exclusive():
                parts.append(self._run(x[i:i + limit], forced, policy))
        if len(parts) == 1:
            return parts[0]
        gate = None if parts[0].gate_logits is None else np.concatenate([p.gate_logits for p in parts])
        joined = (np.concatenate([getattr(p, f) for p in parts]) for f in ("logits", "routes", "macs"))
        return DispatchResult(*joined, gate)

    def _run(self, x: np.ndarray, forced: RouteInfo | None, policy) -> DispatchResult:
        logits = np.empty((x.shape[0], self._num_classes), np.float32)
        if forced is not None and forced.kind == "fixed":
            self.backend.run_fixed(forced, x, logits)
            chosen = np.full(x.shape[0], forced.index, np.int64)
            return DispatchResult(logits, chosen, self._route_macs[chosen], None)
        features, gate_logits = self.backend.run_gate(x)
        if forced is not None:
            chosen = np.full(x.shape[0], forced.index, np.int64)
        else:
            chosen = self._gate_to_route[np.argmax(gate_logits + self._gate_bias, axis=1)]
            if Policy(policy or self.policy) is Policy.WHOLE_BATCH:
                chosen[:] = chosen[np.argmax(self._route_macs[chosen])]
        groups = np.unique(chosen)
        for k in groups:
            info = self.manifest.routes[int(k)]
            if len(groups) == 1:
                self.backend.run_route(info, features, None, logits)
            else:
                rows = np.flatnonzero(chosen == k)
                out = np.empty((rows.size, self._num_classes), np.float32)
                self.backend.run_route(info, features, rows, out)
                logits[rows] = out
        return DispatchResult(logits, chosen, self._route_macs[chosen], gate_logits)

    def gate_logits(self, x: np.ndarray) -> np.ndarray:
        """The gate's raw logits [N, gate routes] (no bias)."""
        x = self._check_batch(x)
        limit = self.backend.max_batch or x.shape[0]
        with self.backend.exclusive():
            return np.concatenate([self.backend.run_gate(x[i:i + limit])[1] for i in range(0, x.shape[0], limit)])

    # -- internals -----------------------------------------------------------------------
    def _route_info(self, route: int | str) -> RouteInfo:
        routes = self.manifest.routes
        if isinstance(route, (int, np.integer)) and not isinstance(route, bool) and 0 <= route < len(routes):
            return routes[int(route)]
        for info in routes:
            if info.name == route:
                return info
        names = ", ".join(f"{r.index}={r.name}" for r in routes)
        raise ValueError(f"unknown route {route!r}; this bundle has {names}")

    def _check_batch(self, x) -> np.ndarray:
        expected = tuple(self.manifest.input.shape)
        if not isinstance(x, np.ndarray):
            raise ValueError(f"input must be a numpy array, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise ValueError(f"input dtype must be float32, got {x.dtype} (convert with x.astype(np.float32))")
        if x.ndim != 4:
            raise ValueError(f"input must be a batch [N, {', '.join(map(str, expected))}] (NCHW), got shape "
                             f"{list(x.shape)}")
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"input shape {list(x.shape)} does not match the bundle's [N, "
                             f"{', '.join(map(str, expected))}] (NCHW)")
        if x.shape[0] == 0:
            raise ValueError("input batch is empty")
        # min/max propagate NaN and expose +-inf in two fast passes (no boolean mask of the batch).
        if not (np.isfinite(x.min()) and np.isfinite(x.max())):
            raise ValueError("input contains NaN or infinite values")
        return np.ascontiguousarray(x)

    def close(self) -> None:
        """Release every engine and the shared weights."""
        self.backend.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _make_backend(name: str, bundle: Bundle, providers, threads, share_weights: bool, shared_pool: bool,
                  device_path: bool) -> Backend:
    if name == "ort":
        from .backends.ort import OrtBackend

        return OrtBackend(bundle, providers, threads, share_weights=share_weights, shared_pool=shared_pool,
                          device_path=device_path)
    if name == "trt":
        if providers is not None:
            raise DsnetError("providers= is an ONNX Runtime option; the TensorRT backend runs on the CUDA device")
        from ..trt.backend import TrtBackend

        return TrtBackend(bundle)
    raise DsnetError(f"unknown backend {name!r} (one of {', '.join(BACKENDS)})")
