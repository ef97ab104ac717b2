"""The dispatcher: gate engine once per batch, then each sample's own dense route engine.

Per-sample routing: the gate runs on the whole batch; each sample takes the argmax of its
(biased) gate logits; samples are grouped by route, each route engine runs once on its group,
and the logits are put back in input order.  No masking: a narrow route costs what it says.
"""

from __future__ import annotations

import enum
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from ..arch import RouteKind
from ..errors import DsnetError, InputError
from .backends import Backend, OptionsTypeError, backend_names, make_backend
from .budget import BUDGET_NAME, load_budget
from .bundle import Bundle, load_bundle
from .manifest import Manifest, RouteInfo


class Policy(str, enum.Enum):
    """How a batch is routed."""

    PER_SAMPLE = "per-sample"    # every sample its own route (default)
    WHOLE_BATCH = "whole-batch"  # the whole batch on the widest route any sample chose


class DispatchResult:
    """What a call returns, per sample in input order.

    ``logits`` [N, num_classes] float32; ``routes`` [N] int64, the manifest route index each sample
    ran through; ``macs`` [N] int64, that route's MAdds; ``gate_logits`` [N, gate routes] before
    the bias, or None for a fixed route.  When one route served the whole batch, ``routes`` and
    ``macs`` are made on first access (a call should not pay for arrays nobody reads).
    """

    __slots__ = ("logits", "gate_logits", "_routes", "_macs", "_route")

    def __init__(self, logits: np.ndarray, routes: np.ndarray | None, macs: np.ndarray | None,
                 gate_logits: np.ndarray | None, route: RouteInfo | None = None):
        """``routes`` and ``macs`` may be None when ``route`` served every sample."""
        self.logits, self.gate_logits = logits, gate_logits
        self._routes, self._macs, self._route = routes, macs, route

    @property
    def routes(self) -> np.ndarray:
        if self._routes is None:
            self._routes = np.full(len(self.logits), self._route.index, np.int64)
        return self._routes

    @property
    def macs(self) -> np.ndarray:
        if self._macs is None:
            self._macs = np.full(len(self.logits), self._route.macs, np.int64)
        return self._macs

    def __repr__(self) -> str:
        return (f"DispatchResult(logits={self.logits!r}, routes={self.routes!r}, macs={self.macs!r}, "
                f"gate_logits={self.gate_logits!r})")


class Dispatcher:
    """Runs a bundle.  Use ``Dispatcher.load``; close it (or use ``with``)."""

    def __init__(self, bundle: Bundle, backend: Backend, *, lazy: bool, policy: Policy | str,
                 gate_bias: np.ndarray | None, check_finite: bool = True):
        self.bundle = bundle
        self.manifest: Manifest = bundle.manifest
        self.backend = backend
        self.policy = policy
        m = self.manifest
        self._route_macs = np.array([r.macs for r in m.routes], np.int64)
        self._gate_to_route = np.array(m.gate.routes, np.int64)
        self._num_classes = int(m.arch["num_classes"])
        self._routes = m.routes
        self._gate_route_info = [m.routes[k] for k in m.gate.routes]  # by gate output
        self._input_shape = tuple(m.input.shape)
        #: Reject NaN/inf inputs before any route runs (inside the gate engine where the backend can,
        #: else a numpy pass).  Without it a non-finite input gives non-finite logits and an
        #: arbitrary route.
        self.check_finite = check_finite
        self.gate_bias = gate_bias
        backend.load(m.gate.file)
        if not lazy:
            for route in m.routes:
                backend.load(route.file)

    @classmethod
    def load(cls, bundle_dir: str | os.PathLike, backend: str | Backend = "ort", options: Any = None, *,
             verify: bool = True, lazy: bool = False, policy: Policy | str = Policy.PER_SAMPLE,
             budget: bool | str | os.PathLike | None = None, check_finite: bool = True) -> Dispatcher:
        """Open a bundle.

        ``backend``: a registered name ('ort': ONNX Runtime, the default; 'trt': TensorRT plans built on this
        device with ``build --trt``; see ``backends.backend_names()``) with ``options``, that backend's options
        object (``OrtOptions(providers='cuda', threads=...)``, ``TrtOptions()``; None: its defaults; another
        backend's options raise ``OptionsTypeError``, a ``TypeError``).  Or a ``Backend`` already constructed
        for this bundle (then no ``options``): the dispatcher takes it over and closes it when it closes.
        ``verify``: check every file's sha256 first.  ``lazy``: prepare route engines on first use.
        ``budget``: True to apply ``<bundle>/budget.json`` from ``calibrate``, or a path to one.
        ``check_finite``: reject NaN/inf inputs (one pass over the input per call; turn off when the input is
        known finite).
        """
        bundle = load_bundle(bundle_dir, verify=verify)
        if isinstance(backend, Backend):
            engine = _given_backend(backend, options, bundle)
        elif isinstance(backend, str):
            engine = None
        else:
            got = f"the class {backend.__name__}" if isinstance(backend, type) else type(backend).__name__
            raise TypeError(f"backend must be a registered name ({', '.join(backend_names())}) or a constructed "
                            f"Backend, got {got}")
        try:
            bias = None
            if budget:
                path = Path(bundle_dir) / BUDGET_NAME if budget is True else Path(budget)
                bias = np.array(load_budget(path, bundle).bias, np.float32)
            if engine is None:
                engine = make_backend(backend, bundle, options)
            return cls(bundle, engine, lazy=lazy, policy=policy, gate_bias=bias, check_finite=check_finite)
        except BaseException:
            if engine is not None:
                engine.close()
            raise

    # -- configuration -------------------------------------------------------------------
    @property
    def routes(self) -> list[RouteInfo]:
        return self.manifest.routes

    @property
    def policy(self) -> Policy:
        """How a batch is routed when a call does not say (per-sample by default)."""
        return self._policy

    @policy.setter
    def policy(self, policy: Policy | str) -> None:
        self._policy = Policy(policy)

    @property
    def gate_bias(self) -> np.ndarray:
        """Per-gate-route bias added to the gate logits before the argmax (the compute-budget knob)."""
        return self._gate_bias

    @gate_bias.setter
    def gate_bias(self, bias) -> None:
        n = len(self.manifest.gate.routes)
        try:
            with np.errstate(over="ignore"):  # beyond float32: inf, refused below
                value = np.zeros(n, np.float32) if bias is None else np.array(bias, np.float32)
        except (TypeError, ValueError, OverflowError):
            value = None
        if value is None or value.shape != (n,) or not np.all(np.isfinite(value)):
            raise InputError(f"gate_bias needs {n} finite numbers (one per gate route, a flat list), got {bias!r:.200}")
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
        forced = None if route is None else self._route_info(route)
        x = self._check_batch(x, forced is not None and forced.kind == RouteKind.FIXED)
        whole_batch = (self._policy if policy is None else Policy(policy)) is Policy.WHOLE_BATCH
        n, limit, lock = x.shape[0], self.backend.max_batch, self.backend.lock
        if limit is None or n <= limit:  # one chunk: x itself, so a refilled buffer stays bound
            if lock is None:
                return self._run(x, forced, whole_batch)
            with lock:
                return self._run(x, forced, whole_batch)
        parts = []
        for i in range(0, n, limit):  # the backend caps the batch
            with lock or nullcontext():
                parts.append(self._run(x[i:i + limit], forced, whole_batch))
        gate = None if parts[0].gate_logits is None else np.concatenate([p.gate_logits for p in parts])
        joined = (np.concatenate([getattr(p, f) for p in parts]) for f in ("logits", "routes", "macs"))
        return DispatchResult(*joined, gate)

    def _run(self, x: np.ndarray, forced: RouteInfo | None, whole_batch: bool) -> DispatchResult:
        n = x.shape[0]
        if forced is not None and forced.kind == RouteKind.FIXED:
            return DispatchResult(self.backend.run_fixed(forced, x), None, None, None, forced)
        features, gate_logits, finite = self.backend.run_gate(x)
        if finite is False and self.check_finite:
            raise InputError("input contains NaN or infinite values")
        if forced is not None:
            return DispatchResult(self.backend.run_route(forced, features, None), None, None, gate_logits, forced)
        if n == 1:  # the common edge case: one argmax, one route, no grouping
            route = self._gate_route_info[(gate_logits + self._gate_bias).argmax()]
            return DispatchResult(self.backend.run_route(route, features, None), None, None, gate_logits, route)
        chosen = self._gate_to_route[np.argmax(gate_logits + self._gate_bias, axis=1)]
        if whole_batch:
            chosen[:] = chosen[np.argmax(self._route_macs[chosen])]
        first = chosen[0]
        if (chosen == first).all():
            route = self._routes[first]
            return DispatchResult(self.backend.run_route(route, features, None), None, None, gate_logits, route)
        logits = np.empty((n, self._num_classes), np.float32)
        for k in np.flatnonzero(np.bincount(chosen, minlength=len(self._routes))):
            rows = np.flatnonzero(chosen == k)
            logits[rows] = self.backend.run_route(self._routes[k], features, rows)
        return DispatchResult(logits, chosen, self._route_macs[chosen], gate_logits)

    def gate_logits(self, x: np.ndarray) -> np.ndarray:
        """The gate's raw logits [N, gate routes] (no bias)."""
        x = self._check_batch(x, fixed=False)
        limit = self.backend.max_batch or x.shape[0]
        parts = []
        with self.backend.lock or nullcontext():
            for i in range(0, x.shape[0], limit):
                _, logits, finite = self.backend.run_gate(x[i:i + limit])
                if finite is False and self.check_finite:
                    raise InputError("input contains NaN or infinite values")
                parts.append(logits)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    # -- internals -----------------------------------------------------------------------
    def _route_info(self, route: int | str) -> RouteInfo:
        routes = self.manifest.routes
        if isinstance(route, (int, np.integer)) and not isinstance(route, bool) and 0 <= route < len(routes):
            return routes[int(route)]
        for info in routes:
            if info.name == route:
                return info
        names = ", ".join(f"{r.index}={r.name}" for r in routes)
        raise InputError(f"unknown route {route!r}; this bundle has {names}")

    def _check_batch(self, x, fixed: bool | None = None) -> np.ndarray:
        """``x`` as the engines take it, or an InputError (a ValueError).  ``fixed``: whether the call runs a fixed
        route (no gate engine, so no in-engine finite check); None when not yet known."""
        if type(x) is np.ndarray and x.dtype == np.float32 and x.shape[1:] == self._input_shape and x.ndim == 4:
            pass  # the usual case, checked in one line
        elif isinstance(x, np.ma.MaskedArray):  # its mask would hide NaN/inf from the check, not from the engines
            raise InputError("input is a numpy masked array; pass plain data, e.g. x.filled(0.0) (masked values "
                             "replaced) or x.filled() for the array the engines would see")
        elif not isinstance(x, np.ndarray):
            raise InputError(f"input must be a numpy array, got {type(x).__name__}")
        elif type(x) is not np.ndarray or x.dtype.newbyteorder("=") == np.float32 != x.dtype:
            # an ndarray subclass (np.memmap, ...) as a plain array; big-endian float32 in native order
            return self._check_batch(np.asarray(x, np.float32 if x.dtype.kind == "f" and x.dtype.itemsize == 4
                                                else None), fixed)
        elif x.dtype != np.float32:
            raise InputError(f"input dtype must be float32, got {x.dtype} (convert with x.astype(np.float32))")
        elif x.ndim != 4:
            dims = ", ".join(map(str, self._input_shape))
            raise InputError(f"input must be a batch [N, {dims}] (NCHW), got shape {list(x.shape)}")
        elif x.shape[1:] != self._input_shape:
            dims = ", ".join(map(str, self._input_shape))
            raise InputError(f"input shape {list(x.shape)} does not match the bundle's [N, {dims}] (NCHW)")
        if x.shape[0] == 0:
            raise InputError("input batch is empty")
        if self.check_finite and not (self.backend.checks_finite and fixed is False) and not np.isfinite(x).all():
            raise InputError("input contains NaN or infinite values")  # the fastest exact numpy test measured
        return x if x.flags.c_contiguous else np.ascontiguousarray(x)

    def close(self) -> None:
        """Release every engine and the shared weights."""
        self.backend.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _given_backend(backend: Backend, options: Any, bundle: Bundle) -> Backend:
    """A backend handed to ``Dispatcher.load``, checked: it brings its own options and runs this bundle."""
    if options is not None:
        raise OptionsTypeError(f"options= is for a backend chosen by name; the {type(backend).__name__} given was "
                               f"constructed with its own options (got {type(options).__name__} as well)")
    own = getattr(backend, "bundle", None)
    if own is not None and Path(own.root).resolve() != Path(bundle.root).resolve():
        raise DsnetError(f"the {type(backend).__name__} given runs the bundle at {own.root}, not {bundle.root}")
    return backend
