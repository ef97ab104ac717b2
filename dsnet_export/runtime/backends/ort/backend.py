"""The ONNX Runtime backend: one session per engine, created eagerly or on first use."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from ....arch import RouteKind
from ....errors import DsnetError
from ...bundle import Bundle
from ...manifest import RouteInfo
from ..base import Backend, resolve_options
from .finite import add_finite_output
from .options import OrtOptions
from .sessions import SessionFactory, device_of, resolve_providers
from .transfer import DeviceTransfer, GateNames, HostTransfer, gather_model_bytes

#: With ``threads`` left to the backend on the CPU, a call whose work is at most this many MAdds
#: (batch x the engine's MAdds per sample) runs on a one-thread session of the engine: waking
#: worker threads costs more than splitting so little work saves.  Measured on 2 cores with the
#: 32x32 digits model: one thread 1.1-1.2x faster at batch 1 (1.5-3M MAdds per engine call),
#: equal at 6-20M, 1.3-1.5x slower at 50M and above; 224x224 models (40M+ per sample) never qualify.
SMALL_CALL_MACS = 5_000_000


class OrtBackend(Backend):
    name = "ort"
    options_class = OrtOptions
    checks_finite = True  # the gate engine carries the input check (see finite.py)

    def __init__(self, bundle: Bundle, options: OrtOptions | None = None, *, device_path: bool = False):
        """``options``: see ``OrtOptions`` (None: its defaults).  ``device_path`` is a test and debug hook, not an
        option: it forces the GPU code path (features kept as ORT values, rows gathered by a session) on the CPU;
        hand such a backend to ``Dispatcher.load(dir, backend)``."""
        self.options = options = resolve_options(type(self), options)
        threads, shared_pool = options.threads, options.shared_pool
        self.bundle = bundle
        self.manifest = m = bundle.manifest
        self._factory: SessionFactory | None = SessionFactory(bundle, resolve_providers(options.providers), threads,
                                                              options.share_weights, shared_pool)
        self._sessions: dict[tuple[str, bool], object] = {}
        self._lock = threading.Lock()
        self._classes = int(m.arch["num_classes"])
        self._gate_file = m.gate.file
        self._gate = GateNames(m.gate.input, m.gate.features, m.gate.logits, tuple(m.gate.features_shape),
                               len(m.gate.routes))
        device = device_of(self._factory.providers)
        #: MAdds per sample of each engine file, for the one-thread choice (``SMALL_CALL_MACS``)
        self._engine_macs = {m.gate.file: m.gate.macs}
        for r in m.routes:
            self._engine_macs[r.file] = r.macs if r.kind == RouteKind.FIXED else max(r.macs - m.gate.macs, 1)
        self._small_calls = threads is None and not shared_pool and device == "cpu" and not device_path
        self._host = HostTransfer(self._session)  # fixed routes take host images on every device
        self._device: DeviceTransfer | None = None
        if device != "cpu" or device_path:
            import onnxruntime as ort

            gather = ort.InferenceSession(gather_model_bytes(), self._factory.options(),
                                          providers=self._factory.providers)
            self._device = DeviceTransfer(device, gather)

    def run_gate(self, x):
        file = self._gate_file
        if self._device is not None:
            return self._device.run_gate(self._session(file), x, self._gate)
        return self._host.run_gate(file, x, self._gate)

    def run_route(self, route: RouteInfo, features, rows: np.ndarray | None) -> np.ndarray:
        if self._device is not None:
            return self._device.run_route(self._session(route.file), features, rows, (route.input, route.output),
                                          self._classes)
        return self._host.run_route(route.file, features, rows, (route.input, route.output), self._classes)

    def run_fixed(self, route: RouteInfo, x: np.ndarray) -> np.ndarray:
        return self._host.run_route(route.file, x, None, (route.input, route.output), self._classes)

    def bound_engines(self, route: RouteInfo, x: np.ndarray) -> Callable[[], None]:
        """Gate and ``route`` engine runs on ``x``, bound once, nothing else: the floor a forced call of
        the dispatcher is measured against (bench).  Valid in this thread while the backend is open."""
        if self._device is not None:
            raise DsnetError("bound_engines measures the CPU path only")
        features, _, _ = self.run_gate(x)
        self.run_route(route, features, None)
        gate, chosen = self._host.bound(self._gate_file, len(x)), self._host.bound(route.file, len(x))

        def run() -> None:
            gate()
            chosen()
        return run

    def load(self, file: str) -> None:
        """The session a batch of one uses (an engine small enough for one thread gets its many-thread
        session on its first large call: loading both would double a small model's cold start)."""
        self._session(file, 1)

    @property
    def shared_weights(self) -> bool:
        return self._factory is not None and self._factory.shared

    @property
    def loaded(self) -> set[str]:
        return {file for file, _ in self._sessions}

    def _session(self, file: str, n: int = 1):
        """The session for a call of ``n`` samples on ``file``."""
        return self._get(file, single_thread=self._small_calls and n * self._engine_macs[file] <= SMALL_CALL_MACS)

    def _get(self, file: str, *, single_thread: bool):
        """An engine's session (its one-thread variant for small calls), created on first use."""
        key = (file, single_thread)
        session = self._sessions.get(key)
        if session is None:
            with self._lock:
                session = self._sessions.get(key)
                if session is None:
                    if self._factory is None:
                        raise DsnetError("this dispatcher is closed")
                    gate = self.manifest.gate
                    check = (lambda model: add_finite_output(model, gate.input)) if file == gate.file else None
                    threads = 1 if single_thread else None
                    session = self._sessions[key] = self._factory.create(file, check, threads=threads)
        return session

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._host.clear()
            if self._factory is not None:
                self._factory.close()
                self._factory = None
