"""A bundle as a Ray Serve application: an ingress, a gate deployment and one deployment per route.

The ingress receives requests (HTTP, or ``handle.infer.remote(x)`` from Python), sends their images to the gate
deployment, chooses each sample's route with ``RouteTable.choose`` and sends each route's rows to that route's
deployment.  Both steps go through one ``KeyedBatcher`` keyed by ``"gate"`` and by route index, so the rows of
concurrent requests that the gate sent to the same route run as one batch of that route's engine.  Every
deployment has its own replica count and resources; the gate and route replicas run ONNX Runtime on the bundle's
own files (``dsnet_export.runtime``, no torch).

Nothing here imports Ray until ``build_app`` is called: the deployment classes are plain classes made into
deployments there, and found by their module path in the replicas (dsnet-export must be installed where the
replicas run, and the bundle readable at the same path).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DsnetError, InputError
from ...records import strict_json_loads
from ...runtime.inputs import read_npy_bytes
from ..batcher import KeyedBatcher
from ..routing import RouteTable, check_images

#: The batcher key of the gate (routes are keyed by their manifest index).
GATE = "gate"
INGRESS = "ingress"
#: The key that gives every route deployment the same setting in ``replicas`` and ``resources``.
ALL_ROUTES = "routes"
#: Resources a replica reserves unless told otherwise.  Logical CPUs, so that a gate, a few routes and the
#: ingress fit on a small machine; each engine session uses ``threads`` real threads whatever is reserved.
DEFAULT_RESOURCES = {INGRESS: {"num_cpus": 0.1}, GATE: {"num_cpus": 0.25}, ALL_ROUTES: {"num_cpus": 0.25}}
#: Ray actor options a deployment may be given in ``resources``.
RESOURCE_OPTIONS = ("num_cpus", "num_gpus", "memory", "resources", "accelerator_type")
APP_NAME = "dsnet"


# -- deployment names ---------------------------------------------------------------------------------------
def served_routes(manifest) -> list[int]:
    """The manifest routes the gate can choose (forced and fixed routes are not served: no sample reaches them)."""
    return sorted(set(manifest.gate.routes))


def deployment_key(key: str | int, manifest) -> str:
    """``key`` of ``replicas`` or ``resources`` as a deployment name: 'ingress', 'gate', 'routes' (every
    route) or 'route_<k>'; a route may be named by its manifest name or index.  A DsnetError names a key that
    is none of these, or a route the gate never chooses."""
    served = served_routes(manifest)
    text = str(key).strip()
    if text in (INGRESS, GATE, ALL_ROUTES):
        return text
    index = None
    if text.startswith("route_") and text[6:].isdigit():
        index = int(text[6:])
    elif text.isdigit():
        index = int(text)
    else:
        index = next((r.index for r in manifest.routes if r.name == text), None)
    valid = ", ".join([INGRESS, GATE, ALL_ROUTES] + [f"route_{k} ({manifest.routes[k].name})" for k in served])
    if index is None or not 0 <= index < len(manifest.routes):
        raise DsnetError(f"unknown deployment {text!r}; this bundle serves {valid}")
    if index not in served:
        route = manifest.routes[index]
        raise DsnetError(f"route {text!r} ({route.kind} route {route.name}) is never chosen by the gate, so it is "
                         f"not served; this bundle serves {valid}")
    return f"route_{index}"


def resolve_replicas(manifest, replicas: Mapping[str | int, int] | None) -> dict[str, int]:
    """Replicas per deployment ('ingress', 'gate', 'route_<k>'): 1 unless ``replicas`` says otherwise."""
    names = [INGRESS, GATE] + [f"route_{k}" for k in served_routes(manifest)]
    given = {}
    for key, count in (replicas or {}).items():
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise DsnetError(f"replicas[{key!r}] must be a positive whole number, got {count!r}")
        given[deployment_key(key, manifest)] = int(count)
    default = given.get(ALL_ROUTES, 1)
    return {n: given.get(n, default if n.startswith("route_") else 1) for n in names}


def resolve_resources(manifest, resources: Mapping[str | int, Mapping[str, Any]] | None) -> dict[str, dict]:
    """Ray actor options per deployment: ``DEFAULT_RESOURCES`` updated by ``resources`` ('routes' for every
    route, then a route's own entry)."""
    given: dict[str, dict] = {}
    for key, options in (resources or {}).items():
        name = deployment_key(key, manifest)
        if not isinstance(options, Mapping):
            raise DsnetError(f"resources[{key!r}] must be a mapping such as {{'num_cpus': 1}}, got {options!r:.80}")
        unknown = sorted(set(options) - set(RESOURCE_OPTIONS))
        if unknown:
            raise DsnetError(f"resources[{key!r}]: unknown option {unknown[0]!r}; use {', '.join(RESOURCE_OPTIONS)}")
        for option in ("num_cpus", "num_gpus"):
            value = options.get(option)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not value >= 0 or value == float("inf")):
                raise DsnetError(f"resources[{key!r}][{option!r}] must be a finite number >= 0, got {value!r}")
        given.setdefault(name, {}).update(options)
    out = {INGRESS: {**DEFAULT_RESOURCES[INGRESS], **given.get(INGRESS, {})},
           GATE: {**DEFAULT_RESOURCES[GATE], **given.get(GATE, {})}}
    for k in served_routes(manifest):
        out[f"route_{k}"] = {**DEFAULT_RESOURCES[ALL_ROUTES], **given.get(ALL_ROUTES, {}),
                             **given.get(f"route_{k}", {})}
    return out


# -- requests -----------------------------------------------------------------------------------------------
def decode_body(body: bytes, content_type: str = "") -> np.ndarray:
    """The images of an HTTP request body: a .npy file (``application/x-npy``, or any body starting with the
    .npy magic), or JSON: a nested list [N][C][H][W] or ``{"inputs": that}``.  An InputError if neither."""
    if body[:6] == b"\x93NUMPY" or "npy" in content_type:
        try:  # the header is checked against the body's length before the array is allocated
            return read_npy_bytes(body, "the body")
        except DsnetError as exc:
            raise InputError(str(exc)) from None
    try:
        data = strict_json_loads(body)  # NaN/inf literals, huge numbers, deep nesting: ValueErrors
    except ValueError as exc:
        raise InputError(f"the body is neither JSON nor a .npy array: {exc}") from None
    if isinstance(data, dict):
        if "inputs" not in data:
            raise InputError(f"a JSON object body needs an 'inputs' key, got keys {sorted(data)[:5]}")
        data = data["inputs"]
    if not isinstance(data, list):
        raise InputError(f"the JSON inputs must be a nested list [N][C][H][W], got {type(data).__name__}")
    try:
        with np.errstate(over="ignore"):  # beyond float32: inf, refused by the finite check
            return np.array(data, dtype=np.float32)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"the JSON inputs are not a rectangular array of numbers: {exc}") from None


# -- deployments ----------------------------------------------------------------------------------------------
class _Engines:
    """An ONNX Runtime backend on the bundle's own files, inside a replica."""

    def __init__(self, bundle_dir: str, threads: int | None, providers):
        from ...runtime import load_bundle
        from ...runtime.backends import make_backend
        from ...runtime.backends.ort import OrtOptions

        self.bundle = load_bundle(bundle_dir, verify=False)  # build_app verified it
        self.manifest = self.bundle.manifest
        self.backend = make_backend("ort", self.bundle, OrtOptions(providers=providers, threads=threads))

    def _locked(self):
        from contextlib import nullcontext

        return self.backend.lock or nullcontext()

    def check_health(self) -> None:
        if self.backend is None:
            raise RuntimeError("the engines are closed")

    def __del__(self):
        backend, self.backend = getattr(self, "backend", None), None
        if backend is not None:
            backend.close()


def gate_dtype(features_shape: tuple[int, ...], gates: int) -> np.dtype:
    """One row of the gate deployment's output: the features and the (unbiased) gate logits of a sample."""
    return np.dtype([("features", np.float32, tuple(features_shape)), ("logits", np.float32, (gates,))])


class GateServer(_Engines):
    """The gate engine: images [n, C, H, W] -> one ``gate_dtype`` record per image."""

    def __init__(self, bundle_dir: str, threads: int | None = 1, providers=None):
        super().__init__(bundle_dir, threads, providers)
        gate = self.manifest.gate
        self.dtype = gate_dtype(tuple(gate.features_shape), len(gate.routes))
        self.backend.load(gate.file)

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._locked():
            features, logits, finite = self.backend.run_gate(x)
            if finite is False:
                raise InputError("input contains NaN or infinite values")
            out = np.empty(len(x), self.dtype)
            out["features"] = features  # copied out of the engine's own buffer, which the next call reuses
            out["logits"] = logits
        return out


class RouteServer(_Engines):
    """One route engine: gate features [n, ...] -> logits [n, classes]."""

    def __init__(self, bundle_dir: str, route: int, threads: int | None = 1, providers=None):
        super().__init__(bundle_dir, threads, providers)
        self.route = self.manifest.routes[route]
        self.backend.load(self.route.file)

    def run(self, features: np.ndarray) -> np.ndarray:
        with self._locked():
            return self.backend.run_route(self.route, np.ascontiguousarray(features), None)


class Ingress:
    """Requests in, logits and routes out; gate and route calls batched across requests by one KeyedBatcher.

    ``infer(x)`` (Python handle) returns ``{"logits": [N, classes] float32, "routes": [N] int64}``;
    HTTP: ``POST /`` with a JSON or .npy body, ``GET /stats``, ``GET /`` (what the bundle takes)."""

    def __init__(self, gate, routes: dict[int, Any], table: RouteTable, name: str = "", *,
                 max_samples: int = 32, max_wait_ms: float = 2.0, local_gate: tuple | None = None,
                 inflight: dict | None = None):
        self._gate, self._routes, self.table, self.name = gate, dict(routes), table, name
        #: (bundle, threads, providers): the gate runs here, in a worker thread, instead of in a gate deployment
        #: (one Ray hop and one image transfer less per request).
        self._local_gate = None if local_gate is None else GateServer(*local_gate)
        # One batch in flight per engine replica: while they are busy, the queues grow into bigger batches.
        self.batcher = KeyedBatcher(self._run, max_samples=max_samples, max_wait_ms=max_wait_ms,
                                    max_inflight=inflight or {})
        self.counts = {"requests": 0, "rows": 0, "rejected": 0, "failed": 0}
        self.started = time.time()

    async def _run(self, key, batch: np.ndarray) -> np.ndarray:
        if key == GATE and self._local_gate is not None:
            return await asyncio.to_thread(self._local_gate.run, batch)
        handle = self._gate if key == GATE else self._routes[key]
        return await handle.run.remote(batch)

    async def infer(self, x: np.ndarray) -> dict:
        try:
            x = check_images(x, self.table.input_shape)
        except InputError:
            self.counts["rejected"] += 1
            raise
        n = len(x)
        self.counts["requests"] += 1
        self.counts["rows"] += n
        try:
            gate = await self.batcher.submit(GATE, x)
            chosen = self.table.choose(gate["logits"])
            groups = self.table.groups(chosen)
            features = gate["features"]
            outputs = await asyncio.gather(*(self.batcher.submit(g.route, features[g.rows]) for g in groups))
            logits = self.table.assemble(n, list(zip(groups, outputs)))
        except Exception:
            self.counts["failed"] += 1
            raise
        return {"logits": logits, "routes": chosen}

    def stats(self) -> dict:
        """This ingress replica's counts and the batches formed per key (rows, submissions, mean and max rows)."""
        routes = {}
        for k in sorted(self._routes):
            entry = self.batcher.stats.get(k)
            routes[self.table.route_names[k]] = {"index": k, **(entry.to_dict() if entry else
                                                                 {"batches": 0, "rows": 0, "submissions": 0,
                                                                  "mean_rows": 0.0, "max_rows": 0})}
        gate = self.batcher.stats.get(GATE)
        return {"bundle": self.name, "uptime_s": round(time.time() - self.started, 3), **self.counts,
                "max_samples": self.batcher.max_samples, "max_wait_ms": self.batcher.max_wait * 1000,
                "gate": gate.to_dict() if gate else {"batches": 0, "rows": 0, "submissions": 0,
                                                     "mean_rows": 0.0, "max_rows": 0},
                "routes": routes}

    def info(self) -> dict:
        t = self.table
        return {"bundle": self.name, "input_shape": ["N", *t.input_shape], "dtype": "float32",
                "num_classes": t.num_classes, "routes": {t.route_names[k]: k for k in sorted(self._routes)},
                "post": "a JSON body [N][C][H][W] or {\"inputs\": ...}, or a .npy body (application/x-npy)"}

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        path = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if request.method == "GET":
            if path == "stats":
                return JSONResponse(self.stats())
            if path in ("", "info"):
                return JSONResponse(self.info())
            return JSONResponse({"error": f"no such resource {request.url.path!r}; GET /stats or /, POST /"},
                                status_code=404)
        if request.method != "POST":
            return JSONResponse({"error": f"method {request.method} not allowed; POST images, GET /stats"},
                                status_code=405, headers={"Allow": "GET, POST"})
        try:
            x = decode_body(await request.body(), request.headers.get("content-type", ""))
            result = await self.infer(x)
        except InputError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Exception as exc:  # noqa: BLE001 - an engine replica failed: this request fails, the service stays
            return JSONResponse({"error": f"{type(exc).__name__}: {str(exc)[:500]}"}, status_code=503)
        names = self.table.route_names
        routes = result["routes"].tolist()
        return JSONResponse({"logits": result["logits"].tolist(), "routes": routes,
                             "route_names": [names[k] for k in routes]})


def deployment_plan(manifest, replicas=None, resources=None, gate_in_ingress: bool = False) -> dict[str, dict]:
    """What ``build_app`` deploys: per deployment name, its replicas, Ray actor options and what it runs."""
    counts, options = resolve_replicas(manifest, replicas), resolve_resources(manifest, resources)
    runs = {INGRESS: "routing and batching", GATE: manifest.gate.file}
    if gate_in_ingress:
        runs[INGRESS] = f"routing and batching, and {manifest.gate.file}"
        del counts[GATE]
    runs.update({f"route_{k}": f"{manifest.routes[k].file} ({manifest.routes[k].name})"
                 for k in served_routes(manifest)})
    return {name: {"replicas": counts[name], "ray_actor_options": options[name], "runs": runs[name]}
            for name in counts}


# -- the application ------------------------------------------------------------------------------------------
def _serve():
    try:
        from ray import serve
    except ImportError as exc:
        raise DsnetError(f"serving with Ray Serve needs ray[serve] ({exc}): pip install 'dsnet-export[serve]'") \
            from None
    return serve


def build_app(bundle_dir: str | os.PathLike, *, replicas: Mapping[str | int, int] | None = None,
              resources: Mapping[str | int, Mapping[str, Any]] | None = None, max_samples: int = 32,
              max_wait_ms: float = 2.0, budget: bool | str | os.PathLike | None = None, threads: int | None = 1,
              providers=None, max_ongoing_requests: int = 1000, health_check_period_s: float = 2.0,
              verify: bool = True, gate_in_ingress: bool = False):
    """The Serve application of a bundle (pass it to ``serve.run``; ``serve.run`` returns the ingress handle).

    ``replicas``: per deployment, keyed 'ingress', 'gate', 'route_<k>' (or the route's manifest name or
    index) or 'routes' (every route); 1 each by default.  ``resources``: Ray actor options per deployment,
    same keys, e.g. ``{"routes": {"num_cpus": 1}, "route_3": {"num_gpus": 0.5}}`` (``DEFAULT_RESOURCES``
    otherwise).  ``max_samples``/``max_wait_ms``: the ingress batcher's limits, for the gate and each route.
    ``budget``: the gate bias, as ``Dispatcher.load`` takes it (True: ``<bundle>/budget.json``; a path).
    ``threads``: intra-op threads of each replica's ONNX Runtime sessions (None: ONNX Runtime's choice);
    ``providers``: ONNX Runtime execution providers (None: the CPU).  ``max_ongoing_requests``: requests one
    ingress replica takes at once (the gate and route replicas take a tenth of it, at least 8): cross-request
    batching needs many at once.  ``health_check_period_s``: how often Serve checks each replica (a dead
    replica is replaced after a failed check).  ``verify``: check the bundle files' sha256 here (the
    replicas then skip it).  ``gate_in_ingress``: run the gate inside each ingress replica (batched across
    requests all the same) instead of in a gate deployment: one Ray hop and one transfer of the images less per
    request, for the price of scaling the gate with the ingress."""
    from ...runtime import load_bundle

    serve = _serve()
    if max_samples < 1 or not max_wait_ms >= 0:
        raise DsnetError(f"max_samples must be at least 1 and max_wait_ms at least 0, got {max_samples} and "
                         f"{max_wait_ms}")
    bundle = load_bundle(bundle_dir, verify=verify)
    manifest = bundle.manifest
    table = RouteTable.from_bundle(bundle, budget)
    counts = resolve_replicas(manifest, replicas)
    actor_options = resolve_resources(manifest, resources)
    root = str(Path(bundle.root).resolve())
    engine_requests = max(8, max_ongoing_requests // 10)

    def deployment(cls, name: str, ongoing: int):
        return serve.deployment(cls).options(name=name, num_replicas=counts[name],
                                             ray_actor_options=actor_options[name], max_ongoing_requests=ongoing,
                                             health_check_period_s=health_check_period_s)

    local = (root, threads, providers) if gate_in_ingress else None
    gate = None if local else deployment(GateServer, GATE, engine_requests).bind(root, threads, providers)
    routes = {k: deployment(RouteServer, f"route_{k}", engine_requests).bind(root, k, threads, providers)
              for k in served_routes(manifest)}
    inflight = {GATE: 1 if local else counts[GATE], **{k: counts[f"route_{k}"] for k in routes}}
    return deployment(Ingress, INGRESS, max_ongoing_requests).bind(
        gate, routes, table, manifest.name, max_samples=max_samples, max_wait_ms=max_wait_ms, local_gate=local,
        inflight=inflight)
