"""The OpenVINO backend: the bundle's ONNX engines, read as they are, compiled by OpenVINO for a device.

OpenVINO's ONNX reader follows each engine's external-data references into ``weights.safetensors`` (offsets into
one file), and its compiler folds the prefix slices into constants: every compiled engine holds its own copy of
its weights (``shared_weights`` is False).  An infer request is not thread-safe, so each thread gets its own per
engine; compiled models are shared.
"""

from __future__ import annotations

import threading

import numpy as np

from ....errors import BundleError, DsnetError
from ....optional import require
from ...bundle import Bundle
from ...manifest import RouteInfo
from ..base import Backend, resolve_options
from .options import OpenVinoOptions


class OpenVinoBackend(Backend):
    name = "openvino"
    options_class = OpenVinoOptions

    def __init__(self, bundle: Bundle, options: OpenVinoOptions | None = None):
        self.options = resolve_options(type(self), options)
        self._ov = require("openvino", "the openvino backend")
        self.bundle = bundle
        self.manifest = m = bundle.manifest
        self._core = self._ov.Core()
        devices = self._core.available_devices
        wanted = self.options.device.split(":")[-1].split(",") if ":" in self.options.device else [
            self.options.device]
        missing = [d for d in wanted if d.split(".")[0] not in {a.split(".")[0] for a in devices}]
        if missing:
            raise DsnetError(f"OpenVINO has no device {', '.join(missing)} here (available: {', '.join(devices)})")
        self._compiled: dict[str, object] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._gate = (m.gate.file, m.gate.input, m.gate.features, m.gate.logits)
        self._closed = False

    # -- engines -------------------------------------------------------------------------------------------
    def _engine(self, file: str):
        compiled = self._compiled.get(file)
        if compiled is None:
            with self._lock:
                if self._closed:
                    raise DsnetError("this dispatcher is closed")
                compiled = self._compiled.get(file)
                if compiled is None:
                    try:
                        compiled = self._core.compile_model(str(self.bundle.path(file)), self.options.device,
                                                            self.options.config())
                    except RuntimeError as exc:
                        raise BundleError(f"OpenVINO cannot compile {file}: {str(exc).strip()[:300]}") from None
                    self._compiled[file] = compiled
        return compiled

    def _request(self, file: str):
        """This thread's infer request on ``file`` (requests are not thread-safe; compiled models are)."""
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        request = requests.get(file)
        if request is None:
            request = requests[file] = self._engine(file).create_infer_request()
        return request

    def _run(self, file: str, inputs: dict[str, np.ndarray], outputs: tuple[str, ...]) -> list[np.ndarray]:
        if self._closed:
            raise DsnetError("this dispatcher is closed")
        request = self._request(file)
        request.infer({name: np.ascontiguousarray(x, dtype=np.float32) for name, x in inputs.items()})
        return [np.array(request.get_tensor(name).data, copy=True) for name in outputs]

    # -- the Backend interface -----------------------------------------------------------------------------
    def run_gate(self, x: np.ndarray):
        file, image, features, logits = self._gate
        feats, gate_logits = self._run(file, {image: x}, (features, logits))
        return feats, gate_logits, None

    def run_route(self, route: RouteInfo, features, rows: np.ndarray | None) -> np.ndarray:
        x = features if rows is None else features[rows]
        return self._run(route.file, {route.input: x}, (route.output,))[0]

    def run_fixed(self, route: RouteInfo, x: np.ndarray) -> np.ndarray:
        return self._run(route.file, {route.input: x}, (route.output,))[0]

    def load(self, file: str) -> None:
        self._engine(file)

    @property
    def shared_weights(self) -> bool:
        return False

    @property
    def loaded(self) -> set[str]:
        return set(self._compiled)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._compiled.clear()
        self._local = threading.local()
