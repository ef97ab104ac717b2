"""Clients of a served bundle, all with one interface (``infer``, ``batch_stats``, ``close``) so the load
generator and the tests treat Triton, Ray Serve and the in-process dispatcher alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np

from ..runtime.dispatcher import Dispatcher


class DispatcherTarget:
    """The in-process dispatcher, one request per call (run in a worker thread: the dispatcher is thread-safe)."""

    def __init__(self, dispatcher: Dispatcher):
        self.dispatcher = dispatcher

    async def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = await asyncio.to_thread(self.dispatcher, x)
        return result.logits, result.routes

    async def batch_stats(self) -> dict[str, dict]:
        return {}

    async def close(self) -> None:
        pass


def batched_throughput(dispatcher: Dispatcher, inputs: Sequence[np.ndarray], *, requests: int,
                       batch: int = 8) -> float:
    """Requests per second of the in-process dispatcher fed the same requests ``batch`` at a time, back to back:
    the baseline a server's throughput is compared with."""
    done, start = 0, time.perf_counter()
    while done < requests:
        take = [inputs[(done + i) % len(inputs)] for i in range(min(batch, requests - done))]
        dispatcher(np.concatenate(take))
        done += len(take)
    return requests / (time.perf_counter() - start)


class TritonTarget:
    """The routing model of a repository from ``triton-repo``, over Triton's HTTP protocol (``tritonclient``).

    Batch statistics come from Triton's own per-model statistics: for each route model, its executions (engine
    runs, each a batch the server formed) and the rows it inferred."""

    def __init__(self, url: str, model: str = "dsnet", *, input_name: str | None = None, concurrency: int = 64):
        import tritonclient.http.aio as httpclient

        self.url, self.model = url, model
        self._client = httpclient.InferenceServerClient(url, conn_limit=concurrency)
        self._http = httpclient
        self._input_name = input_name

    async def _name(self) -> str:
        if self._input_name is None:
            meta = await self._client.get_model_metadata(self.model)
            self._input_name = meta["inputs"][0]["name"]
        return self._input_name

    async def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tensor = self._http.InferInput(await self._name(), list(x.shape), "FP32")
        tensor.set_data_from_numpy(np.ascontiguousarray(x, np.float32), binary_data=True)
        outputs = [self._http.InferRequestedOutput(n, binary_data=True) for n in ("logits", "routes")]
        result = await self._client.infer(self.model, [tensor], outputs=outputs)
        return result.as_numpy("logits"), result.as_numpy("routes").reshape(-1)

    async def batch_stats(self) -> dict[str, dict]:
        stats = await self._client.get_inference_statistics()
        out = {}
        for entry in stats.get("model_stats", []):
            name = entry.get("name", "")
            if name.startswith("route_"):
                runs, rows = int(entry.get("execution_count", 0)), int(entry.get("inference_count", 0))
                out[name] = {"batches": runs, "rows": rows}
        return out

    async def close(self) -> None:
        await self._client.close()


class RayHttpTarget:
    """A Ray Serve application from ``serve``, over HTTP (``.npy`` request bodies, JSON answers)."""

    def __init__(self, url: str, *, concurrency: int = 64):
        import aiohttp

        self.url = url.rstrip("/")
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))

    async def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import io

        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(x, np.float32))
        async with self._session.post(self.url + "/", data=buffer.getvalue(),
                                      headers={"content-type": "application/x-npy"}) as response:
            body = await response.json(content_type=None)
            if response.status != 200:
                message = body.get("error", body) if isinstance(body, dict) else body
                raise RuntimeError(f"HTTP {response.status}: {message}")
        return np.array(body["logits"], np.float32), np.array(body["routes"], np.int64)

    async def batch_stats(self) -> dict[str, dict]:
        async with self._session.get(self.url + "/stats") as response:
            return _ray_route_stats(await response.json(content_type=None))

    async def close(self) -> None:
        await self._session.close()


class RayHandleTarget:
    """A Ray Serve application's ingress through a Python deployment handle (same cluster)."""

    def __init__(self, app_name: str):
        from ray import serve

        self._handle = serve.get_app_handle(app_name)

    async def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = await self._handle.infer.remote(x)
        return result["logits"], result["routes"]

    async def batch_stats(self) -> dict[str, dict]:
        return _ray_route_stats(await self._handle.stats.remote())

    async def close(self) -> None:
        pass


def _ray_route_stats(stats: dict) -> dict[str, dict]:
    """An ingress ``stats()`` answer as ``{route name: {batches, rows}}`` (one ingress replica's view)."""
    return {name: {"batches": s["batches"], "rows": s["rows"]} for name, s in stats.get("routes", {}).items()}
