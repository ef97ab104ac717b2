"""The LiteRT backend: the bundle's engines converted to .tflite (``export-format --format litert``), run by the
``ai_edge_litert`` interpreter with XNNPACK.  Torch-free, like the ONNX Runtime backend."""

from __future__ import annotations

import threading

import numpy as np

from ....errors import BundleError, DsnetError
from ...bundle import Bundle
from ...manifest import RouteInfo
from ..base import Backend, resolve_options
from .engine import LiteRtEngine
from .options import LiteRtOptions


class LiteRtBackend(Backend):
    name = "litert"
    options_class = LiteRtOptions

    def __init__(self, bundle: Bundle, options: LiteRtOptions | None = None):
        self.options = resolve_options(type(self), options)
        self.bundle = bundle
        self.manifest = m = bundle.manifest
        converted = m.format_engines("litert")
        if converted is None:
            raise BundleError(f"{bundle.root}: has no LiteRT engines; convert them first: "
                              f"python -m dsnet_export export-format {bundle.root} --format litert")
        self._files = converted.engines
        self.max_batch = converted.max_batch
        self._models: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._closed = False

    def _engine(self, file: str) -> LiteRtEngine:
        if self._closed:
            raise DsnetError("this dispatcher is closed")
        engines = getattr(self._local, "engines", None)
        if engines is None:
            engines = self._local.engines = {}
        engine = engines.get(file)
        if engine is None:
            engine = engines[file] = LiteRtEngine(self._model(file), self.options.threads)
        return engine

    def _model(self, file: str) -> bytes:
        """The converted file's bytes, read once (every thread's interpreter is built from them)."""
        with self._lock:
            if file not in self._models:
                try:
                    self._models[file] = self.bundle.path(self._files[file]).read_bytes()
                except OSError as exc:
                    raise BundleError(f"{self._files[file]}: cannot be read ({exc})") from None
            return self._models[file]

    def run_gate(self, x: np.ndarray):
        features, logits = self._engine(self.manifest.gate.file)(x)
        return features, logits.reshape(len(x), -1), None  # [N, 1, 1, R] -> [N, R] (see export.formats)

    def run_route(self, route: RouteInfo, features, rows: np.ndarray | None) -> np.ndarray:
        x = features if rows is None else features[rows]
        return self._engine(route.file)(x)[0]

    def run_fixed(self, route: RouteInfo, x: np.ndarray) -> np.ndarray:
        return self._engine(route.file)(x)[0]

    def load(self, file: str) -> None:
        self._engine(file)

    @property
    def shared_weights(self) -> bool:
        return False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._models.clear()
        self._local = threading.local()
