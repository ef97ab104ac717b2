"""The TensorRT backend: plans for this device, refitted from the shared weights, run on one stream.

One execution context per engine; device buffers and pinned host buffers allocated once for the
plans' largest batch; per call ``set_input_shape`` + ``set_tensor_address`` + ``execute_async_v3``.
The gate's features stay on the GPU; each route's samples are gathered there with one
device-to-device copy per contiguous run of rows.  Calls are serialised (one stream, one set of
buffers); the dispatcher splits batches larger than the plans' maximum.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ....errors import DsnetError, InputError
from ...bundle import Bundle
from ...manifest import RouteInfo
from ...weights import map_weights
from ..base import Backend, resolve_options
from .compat import TrtApi, load_cudart
from .cuda import Cuda, host_view
from .device import current_device
from .options import TrtOptions
from .variant import make_variant

_FLOAT = 4


@dataclass
class _Buffer:
    device: int
    host: np.ndarray | None  # pinned mirror, when the host reads or writes it
    row_bytes: int


@dataclass(frozen=True)
class DeviceFeatures:
    """The gate's features: the first ``rows`` rows of the device features buffer."""

    rows: int


class TrtBackend(Backend):
    name = "trt"
    options_class = TrtOptions

    def __init__(self, bundle: Bundle, options: TrtOptions | None = None, *, trt_module=None, cudart_module=None):
        """``trt_module``/``cudart_module`` replace the real ``tensorrt`` and CUDA runtime modules (tests)."""
        self.options = resolve_options(type(self), options)
        self.bundle, self.manifest = bundle, bundle.manifest
        self.api = TrtApi.load(trt_module)
        self.cuda = Cuda(load_cudart(cudart_module))
        self.device = current_device(self.api, self.cuda)
        self.plans = self.manifest.plans_for(self.device.tag)
        if self.plans is None:
            built = ", ".join(p.tag for p in self.manifest.trt) or "none"
            raise DsnetError(f"{bundle.root}: no TensorRT plans for this device ({self.device.tag}; built: {built}). "
                             f"Build them here: python -m dsnet_export build-trt {bundle.root}")
        self.max_batch = self.plans.max_batch
        self._logger = self.api.logger()
        self._runtime = self.api.trt.Runtime(self._logger)
        self._weights: dict[str, np.ndarray] | None = None
        self._engines: dict[str, tuple[object, object]] = {}
        self._lock = self.lock = threading.RLock()
        self._stream = self.cuda.stream()
        self._buffers: dict[str, _Buffer] = {}
        m = self.manifest
        classes, gate_routes = int(m.arch["num_classes"]), len(m.gate.routes)
        self._alloc("image", int(np.prod(m.input.shape)), pinned=True)
        self._alloc("features", int(np.prod(m.gate.features_shape)), pinned=False)
        self._alloc("gathered", int(np.prod(m.gate.features_shape)), pinned=False)
        self._alloc("gate_logits", gate_routes, pinned=True)
        self._alloc("logits", classes, pinned=True)

    # -- Backend API -----------------------------------------------------------------------
    def run_gate(self, x: np.ndarray):
        g = self.manifest.gate
        n = self._upload(x)
        self._execute(g.file, g.input, n, {g.input: "image", g.features: "features", g.logits: "gate_logits"})
        return DeviceFeatures(n), self._download("gate_logits", n), None

    def run_route(self, route: RouteInfo, features: DeviceFeatures, rows: np.ndarray | None) -> np.ndarray:
        source = "features"
        n = features.rows
        if rows is not None:
            self._gather(rows)
            source, n = "gathered", len(rows)
        self._execute(route.file, route.input, n, {route.input: source, route.output: "logits"})
        return self._download("logits", n)

    def run_fixed(self, route: RouteInfo, x: np.ndarray) -> np.ndarray:
        n = self._upload(x)
        self._execute(route.file, route.input, n, {route.input: "image", route.output: "logits"})
        return self._download("logits", n)

    def load(self, file: str) -> None:
        self._engine(file)

    @property
    def shared_weights(self) -> bool:
        """Stripped plans hold no weights: each was refitted from the bundle's one weights file."""
        return self.plans.stripped

    def close(self) -> None:
        with self._lock:
            self._engines.clear()
            for buf in self._buffers.values():
                self.cuda.free(buf.device)
                if buf.host is not None:
                    self.cuda.free_host(buf.host.ctypes.data)
            self._buffers.clear()
            if self._stream is not None:
                self.cuda.destroy_stream(self._stream)
                self._stream = None

    # -- engines ---------------------------------------------------------------------------
    def _engine(self, file: str):
        with self._lock:
            if self._stream is None:
                raise DsnetError("this dispatcher is closed")
            if file not in self._engines:
                plan = self.bundle.path(self.plans.plans[file]).read_bytes()
                engine = self._runtime.deserialize_cuda_engine(plan)
                if engine is None:
                    raise DsnetError(f"TensorRT could not load {self.plans.plans[file]} (built for "
                                     f"{self.plans.tag} with TensorRT {self.plans.tensorrt_version})")
                if self.plans.stripped:
                    self._refit(engine, file)
                self._engines[file] = (engine, engine.create_execution_context())
            return self._engines[file]

    def _refit(self, engine, file: str) -> None:
        """Refit a weight-stripped plan from its variant, regenerated from the shared weights file."""
        if self._weights is None:
            self._weights = map_weights(self.bundle.weights_path)
        variant = make_variant(self.manifest, self._weights, file,
                               fp16_graph=self.api.fp16_graph(self.plans.precision))
        if variant.sha256 != self.plans.variants[file]:
            raise DsnetError(f"{file}: the ONNX regenerated for refitting differs from the one the plan was built "
                             f"from (sha256 {variant.sha256[:12]} vs {self.plans.variants[file][:12]}); rebuild with "
                             f"python -m dsnet_export build-trt {self.bundle.root}")
        self.api.refit_from_onnx(engine, self._logger, variant.model)

    def _execute(self, file: str, input_name: str, n: int, bindings: dict[str, str]) -> None:
        engine, context = self._engine(file)
        shape = (n, *self._sample_shape(input_name))
        if not context.set_input_shape(input_name, shape):
            raise DsnetError(f"{file}: TensorRT refused input shape {shape} "
                             f"(plans built for batch 1..{self.max_batch})")
        for tensor, buffer in bindings.items():
            context.set_tensor_address(tensor, self._buffers[buffer].device)
        if not context.execute_async_v3(int(self._stream)):
            raise DsnetError(f"{file}: TensorRT execution failed")

    # -- buffers ---------------------------------------------------------------------------
    def _alloc(self, name: str, per_sample: int, *, pinned: bool) -> None:
        nbytes = self.max_batch * per_sample * _FLOAT
        host = host_view(self.cuda.malloc_host(nbytes), (self.max_batch, per_sample)) if pinned else None
        self._buffers[name] = _Buffer(self.cuda.malloc(nbytes), host, per_sample * _FLOAT)

    def _upload(self, x: np.ndarray) -> int:
        if self._stream is None:
            raise DsnetError("this dispatcher is closed")
        n = x.shape[0]
        if n > self.max_batch:
            raise InputError(f"batch of {n} exceeds the plans' maximum {self.max_batch}")
        image = self._buffers["image"]
        image.host[:n] = x.reshape(n, -1)
        self.cuda.copy(image.device, image.host.ctypes.data, n * image.row_bytes, "htod", self._stream)
        return n

    def _download(self, name: str, n: int) -> np.ndarray:
        buf = self._buffers[name]
        self.cuda.copy(buf.host.ctypes.data, buf.device, n * buf.row_bytes, "dtoh", self._stream)
        self.cuda.synchronize(self._stream)
        return buf.host[:n].copy()

    def _gather(self, rows: np.ndarray) -> None:
        """Copy feature rows ``rows`` (ascending) to the front of the gather buffer, one copy per run."""
        src, dst = self._buffers["features"], self._buffers["gathered"]
        start = 0
        for stop in [*np.flatnonzero(np.diff(rows) != 1) + 1, len(rows)]:
            count = stop - start
            self.cuda.copy(dst.device + start * dst.row_bytes, src.device + int(rows[start]) * src.row_bytes,
                           count * src.row_bytes, "dtod", self._stream)
            start = stop

    def _sample_shape(self, input_name: str) -> tuple[int, ...]:
        m = self.manifest
        return tuple(m.gate.features_shape) if input_name == m.gate.features else tuple(m.input.shape)
