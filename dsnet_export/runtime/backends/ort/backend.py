"""The ONNX Runtime backend: one session per engine, created eagerly or on first use."""

from __future__ import annotations

import threading

import numpy as np

from ....errors import DsnetError
from ...bundle import Bundle
from ...manifest import RouteInfo
from ..base import Backend
from .sessions import SessionFactory, device_of, resolve_providers
from .transfer import DeviceTransfer, HostTransfer, gather_model_bytes


class OrtBackend(Backend):
    name = "ort"

    def __init__(self, bundle: Bundle, providers: list[str] | str | None = None, threads: int | None = None, *,
                 share_weights: bool = True, shared_pool: bool = False, device_path: bool = False):
        """``device_path`` forces the GPU code path (features kept as ORT values) on the CPU, for tests."""
        self.manifest = bundle.manifest
        self._factory: SessionFactory | None = SessionFactory(bundle, resolve_providers(providers), threads,
                                                              share_weights, shared_pool)
        self._sessions: dict[str, object] = {}
        self._lock = threading.Lock()
        device = device_of(self._factory.providers)
        if device == "cpu" and not device_path:
            self._transfer = HostTransfer()
        else:
            import onnxruntime as ort

            gather = ort.InferenceSession(gather_model_bytes(), self._factory.options(),
                                          providers=self._factory.providers)
            self._transfer = DeviceTransfer(device, gather)

    def run_gate(self, x):
        g = self.manifest.gate
        return self._transfer.run_gate(self._session(g.file), x, (g.input, g.features, g.logits),
                                       tuple(g.features_shape), len(g.routes))

    def run_route(self, route: RouteInfo, features, rows: np.ndarray | None, out: np.ndarray) -> None:
        self._transfer.run_route(self._session(route.file), features, rows, (route.input, route.output), out)

    def run_fixed(self, route: RouteInfo, x: np.ndarray, out: np.ndarray) -> None:
        HostTransfer().run_route(self._session(route.file), x, None, (route.input, route.output), out)

    def load(self, file: str) -> None:
        self._session(file)

    @property
    def shared_weights(self) -> bool:
        return self._factory is not None and self._factory.shared

    @property
    def loaded(self) -> set[str]:
        return set(self._sessions)

    def _session(self, file: str):
        session = self._sessions.get(file)
        if session is None:
            with self._lock:
                session = self._sessions.get(file)
                if session is None:
                    if self._factory is None:
                        raise DsnetError("this dispatcher is closed")
                    session = self._sessions[file] = self._factory.create(file)
        return session

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()
            if self._factory is not None:
                self._factory.close()
                self._factory = None
