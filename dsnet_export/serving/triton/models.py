"""The Python-backend models of a repository from ``write_repository``, run inside Triton's Python stub.

``RoutingModel`` (the ``dsnet`` model): Triton hands it the requests its dynamic batcher queued.  It checks each
request's images (a bad one gets its own error response), runs the gate model once on the images of all the good
ones (BLS), chooses each row's route with ``RouteTable`` (the dispatcher's rule), calls every chosen route model
once with its rows -- all routes concurrently (async BLS) -- and puts the logits back in input order.  A route model
that fails (unloaded, say) fails only the requests with rows on that route.

``EngineModel`` (``--engines python``): the gate or one route, run with dsnet-export's ONNX Runtime backend on the
bundle's own files (the weights memory-mapped, one copy per process).

``pb_utils`` is the stub's ``triton_python_backend_utils`` module, handed in by the generated ``model.py`` (this
module is importable without Triton).
"""

from __future__ import annotations

import asyncio
import json

import numpy as np

from ...arch import RouteKind
from ...errors import InputError
from ...runtime.bundle import load_bundle
from ..routing import RouteTable, check_images, split_rows


def _error(pb_utils, message: str, code: str = "INVALID_ARG"):
    """A ``TritonError`` with ``code`` where the stub knows error codes (INVALID_ARG shows as HTTP 400)."""
    value = getattr(pb_utils.TritonError, code, None)
    return pb_utils.TritonError(message) if value is None else pb_utils.TritonError(message, value)


def _error_response(pb_utils, message: str, code: str = "INVALID_ARG"):
    return pb_utils.InferenceResponse(output_tensors=[], error=_error(pb_utils, message, code))


def to_numpy(tensor) -> np.ndarray:
    """A stub tensor's data through DLPack: the stub's ``as_numpy`` reads wrong data under numpy 2 (measured with
    the ``nvidia-pytriton`` 0.7.0 stub, built for numpy 1)."""
    try:
        return np.from_dlpack(tensor)
    except (AttributeError, TypeError, BufferError, RuntimeError):  # a stub without DLPack, or a BYTES tensor
        return tensor.as_numpy()


def to_tensor(pb_utils, name: str, array: np.ndarray):
    """A stub tensor of ``array`` (C-contiguous), through DLPack for the same reason as ``to_numpy``."""
    array = np.ascontiguousarray(array)
    if hasattr(pb_utils.Tensor, "from_dlpack"):
        return pb_utils.Tensor.from_dlpack(name, array)
    return pb_utils.Tensor(name, array)


class RoutingModel:
    """The ``dsnet`` model: gate, group by route, one call per route, reassemble (see the module)."""

    def __init__(self, config: dict, params: dict[str, str], pb_utils):
        self.pb = pb_utils
        bundle = load_bundle(params["bundle"], verify=False)
        self.manifest = m = bundle.manifest
        self.table = RouteTable.from_bundle(bundle, params.get("budget") or None)
        self.gate_model = params["gate_model"]
        self.route_models = {int(k): v for k, v in json.loads(params["route_models"]).items()}
        self.engine_max_batch = int(params.get("engine_max_batch") or config.get("max_batch_size") or 0) or None
        self.image_name = m.input.name
        self.shape = tuple(m.input.shape)

    async def execute(self, requests):
        responses, images, owners = checked_inputs(self.pb, requests, self.image_name, self.shape)
        if images:
            for i, response in zip(owners, await self._route(images)):
                responses[i] = response
        return responses

    async def _route(self, images: list[np.ndarray]) -> list:
        """One response per entry of ``images``."""
        pb, m = self.pb, self.manifest
        x = images[0] if len(images) == 1 else np.concatenate(images)
        n = len(x)
        bounds = np.cumsum([0] + [len(a) for a in images])
        try:
            gate_parts = await asyncio.gather(*[
                self._infer(self.gate_model, m.gate.input, x[s], [m.gate.features, m.gate.logits])
                for s in split_rows(n, self.engine_max_batch)])
        except _ModelError as exc:
            return [_error_response(pb, f"gate: {exc}", "UNAVAILABLE")] * len(images)
        features = np.concatenate([p[0] for p in gate_parts]) if len(gate_parts) > 1 else gate_parts[0][0]
        gate_logits = np.concatenate([p[1] for p in gate_parts]) if len(gate_parts) > 1 else gate_parts[0][1]
        chosen = self.table.choose(gate_logits)
        groups = self.table.groups(chosen)
        outputs = await asyncio.gather(*[self._run_route(g.route, x, features, g.rows) for g in groups],
                                       return_exceptions=True)
        failed = np.zeros(n, bool)
        reasons: dict[int, str] = {}
        parts = []
        for group, out in zip(groups, outputs):
            if isinstance(out, BaseException):
                if not isinstance(out, _ModelError):
                    raise out
                failed[group.rows] = True
                reasons[group.route] = f"{self.route_models[group.route]}: {out}"
                out = np.zeros((len(group.rows), self.table.num_classes), np.float32)
            parts.append((group, out))
        logits = self.table.assemble(n, parts)
        responses = []
        for j in range(len(images)):
            rows = slice(int(bounds[j]), int(bounds[j + 1]))
            if failed[rows].any():
                routes = sorted({int(k) for k in chosen[rows][failed[rows]]})
                responses.append(_error_response(pb, "; ".join(reasons[k] for k in routes), "UNAVAILABLE"))
            else:
                responses.append(pb.InferenceResponse(output_tensors=[
                    to_tensor(pb, "logits", logits[rows]),
                    to_tensor(pb, "routes", chosen[rows].astype(np.int64))]))
        return responses

    async def _run_route(self, route: int, x: np.ndarray, features: np.ndarray, rows: np.ndarray) -> np.ndarray:
        info = self.manifest.routes[route]
        source = x if info.kind == RouteKind.FIXED else features
        batch = np.take(source, rows, axis=0)
        parts = await asyncio.gather(*[self._infer(self.route_models[route], info.input, batch[s], [info.output])
                                       for s in split_rows(len(batch), self.engine_max_batch)])
        return parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])

    async def _infer(self, model: str, input_name: str, x: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        pb = self.pb
        data = np.array(x, order="C", copy=True)  # held until the call returns: the tensor may only point at it
        request = pb.InferenceRequest(model_name=model, requested_output_names=outputs,
                                      inputs=[to_tensor(pb, input_name, data)])
        try:
            response = await request.async_exec()
        except Exception as exc:  # noqa: BLE001 - the stub raises its own error types for unknown models
            raise _ModelError(str(exc)) from None
        del data
        if response.has_error():
            raise _ModelError(response.error().message())
        result = []
        for name in outputs:
            tensor = pb.get_output_tensor_by_name(response, name)
            if tensor is None:
                raise _ModelError(f"no output {name!r}")
            result.append(np.array(to_numpy(tensor)))  # copied out of the response's memory
        return result

    def close(self) -> None:
        pass


def checked_inputs(pb, requests, name: str, shape: tuple[int, ...]) -> tuple[list, list, list]:
    """(responses, arrays, owners): each request's input ``name`` checked against ``shape`` [.., ...]; a bad one
    gets its error response now (it fails alone), a good one its array and its request index."""
    responses: list = [None] * len(requests)
    arrays, owners = [], []
    for i, request in enumerate(requests):
        tensor = pb.get_input_tensor_by_name(request, name)
        try:
            if tensor is None:
                raise InputError("missing input")
            arrays.append(check_images(to_numpy(tensor), shape))
            owners.append(i)
        except InputError as exc:
            responses[i] = _error_response(pb, str(exc))
    return responses, arrays, owners


class _ModelError(Exception):
    """A BLS call to an engine model failed."""


class EngineModel:
    """The gate or one route engine (``--engines python``): dsnet-export's ONNX Runtime backend in-process."""

    def __init__(self, config: dict, params: dict[str, str], pb_utils):
        from ...runtime.backends.ort import OrtBackend, OrtOptions

        self.pb = pb_utils
        bundle = load_bundle(params["bundle"], verify=False)
        m = bundle.manifest
        threads = int(params["threads"]) if params.get("threads") else None
        self.backend = OrtBackend(bundle, OrtOptions(threads=threads))
        self.route = None if params["engine"] == "gate" else m.routes[int(params["route"])]
        self.file = m.gate.file if self.route is None else self.route.file
        self.backend.load(self.file)
        if self.route is None:
            self.input, self.outputs = m.gate.input, [m.gate.features, m.gate.logits]
            self.shape = tuple(m.input.shape)
        else:
            fixed = self.route.kind == RouteKind.FIXED
            self.input, self.outputs = self.route.input, [self.route.output]
            self.shape = tuple(m.input.shape if fixed else m.gate.features_shape)

    def execute(self, requests):
        pb = self.pb
        responses, arrays, owners = checked_inputs(pb, requests, self.input, self.shape)
        if not arrays:
            return responses
        x = np.ascontiguousarray(arrays[0] if len(arrays) == 1 else np.concatenate(arrays))
        try:
            results = self._run(x)
        except Exception as exc:  # noqa: BLE001 - an engine failure fails this batch's requests, not the model
            for i in owners:
                responses[i] = _error_response(pb, f"{type(exc).__name__}: {exc}", "INTERNAL")
            return responses
        start = 0
        for i, a in zip(owners, arrays):
            rows = slice(start, start + len(a))
            start += len(a)
            responses[i] = pb.InferenceResponse(output_tensors=[
                to_tensor(pb, name, value[rows]) for name, value in zip(self.outputs, results)])
        return responses

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        if self.route is None:
            features, logits, _ = self.backend.run_gate(x)
            return [np.array(features), logits]  # the features buffer is the session binding's own: copied
        if self.route.kind == RouteKind.FIXED:
            return [self.backend.run_fixed(self.route, x)]
        return [self.backend.run_route(self.route, x, None)]

    def close(self) -> None:
        self.backend.close()
