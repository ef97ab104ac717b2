"""ONNX Runtime sessions for a bundle: provider choice and one shared in-memory copy of the weights.

Each engine file refers to the bundle's weights file as ONNX external data.  Instead of letting
every session read that file, the sessions are handed the memory-mapped tensors through
``SessionOptions.add_external_initializers``, which ONNX Runtime's graph optimizer reads when it
folds the prefix ``Slice``s and BatchNorms into each route's own dense weights.

ONNX Runtime can ignore injected tensors with only a log warning.  To know that it did not, the
model is loaded from bytes with its external-data folder pointed at an *empty* stand-in weights
file: if any tensor were not taken from memory, the session would fail to read it.  On such a
failure the session is built from the real files instead and the fact is recorded.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ....errors import BundleError, DsnetError
from ...bundle import Bundle
from ...weights import MappedWeights, map_weights, read_layout

if TYPE_CHECKING:
    import onnx

_PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
_PROVIDER_PACKAGES = {
    "CUDAExecutionProvider": "the onnxruntime-gpu package (with matching CUDA and cuDNN libraries)",
    "TensorrtExecutionProvider": "onnxruntime-gpu built with TensorRT support and the TensorRT libraries",
}
_GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}


def resolve_providers(providers: list[str] | str | None) -> list[str]:
    """Full provider names, CPU appended as the fallback; a clear error for unavailable ones."""
    import onnxruntime as ort

    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        providers = [p for p in providers.split(",") if p]
    names = [_PROVIDER_ALIASES.get(p.lower(), p) for p in providers]
    available = ort.get_available_providers()
    for name in names:
        if name not in available:
            need = _PROVIDER_PACKAGES.get(name, "an onnxruntime build that has it")
            raise DsnetError(f"execution provider {name} is not available in this onnxruntime "
                             f"({', '.join(available)}); it needs {need}")
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
    return names


_POOL: list[int | None] = []


def _global_pool(threads: int | None) -> None:
    """Create ONNX Runtime's process-wide thread pool once (sized by the first caller's ``threads``)."""
    if not _POOL:
        import onnxruntime as ort

        ort.set_global_thread_pool_sizes(threads or 0, 1)  # 0: one thread per core
        _POOL.append(threads)


def device_of(providers: list[str]) -> str:
    """Where session outputs can stay between engines: 'cuda' for GPU providers, else 'cpu'."""
    return "cuda" if providers[0] in _GPU_PROVIDERS else "cpu"


def session_options(threads: int | None = None, *, shared_pool: bool = False, back_to_back: bool = True):
    """The ``SessionOptions`` of every ONNX Runtime session dsnet-export runs: the dispatcher's engines and
    the bench's contenders alike, so they are compared like with like.

    ``threads``: intra-op threads (one inter-op thread); None: ONNX Runtime's default, one per core.
    ``shared_pool``: the process-wide pool instead (created here on first use, sized by ``threads``).
    ``back_to_back``: the session is one of several run one after another in a call (the dispatcher's
    gate and route), so its workers stop spinning when a run returns; False for a session that runs
    alone (the bench's monolithic and masked contenders), which keeps ONNX Runtime's default spinning,
    as a user deploying one model gets it.  The graph optimisation level and execution mode are ONNX
    Runtime's defaults (all optimisations, sequential).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # A dispatcher call runs two sessions back to back (gate, then route), each with its own
    # worker threads.  Workers spin while a run is in progress (a parallel operator then costs no
    # wake-up) and stop spinning the moment the run returns (``force_spinning_stop``), so they
    # never steal the cores of the next session.  Measured on 2 cores, batch 1 and 8: within
    # 0.8-1.03x of one monolithic session; never spinning cost up to 1.33x, always spinning up
    # to 2.1x (the gate's workers spin through the route's run).  ``shared_pool``: one
    # process-wide pool instead (ONNX Runtime then refuses every session in the process that
    # does not opt in, the reason it is not the default).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.inter_op.allow_spinning", "1")
    if back_to_back:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    if _POOL and not shared_pool:
        warnings.warn("ONNX Runtime's process-wide thread pool is in use (a session was made with shared_pool=True) "
                      "and ONNX Runtime then refuses sessions with threads of their own: this session uses the "
                      "shared pool too", RuntimeWarning, stacklevel=2)
        shared_pool = True
    if shared_pool:
        _global_pool(threads)
        options.use_per_session_threads = False
    elif threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


@dataclass
class SessionFactory:
    """Builds sessions for a bundle's engine files, all fed from one mapped copy of the weights."""

    bundle: Bundle
    providers: list[str]
    threads: int | None = None
    share_weights: bool = True
    shared_pool: bool = False
    #: Engine files whose session could not take the shared tensors (built from files instead).
    unshared: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._weights: MappedWeights | None = None
        self._ort_values: dict = {}
        self._standin = tempfile.TemporaryDirectory(prefix="dsnet-standin-")
        # An empty file with the weights' name: reading it would fail, so success proves sharing.
        (Path(self._standin.name) / self.bundle.manifest.weights).touch()

    def options(self, threads: int | None = None):
        """``session_options`` for this factory; ``threads`` overrides its intra-op thread count (not the
        shared pool's size)."""
        if self.shared_pool:
            return session_options(self.threads, shared_pool=True)
        return session_options(threads or self.threads)

    def create(self, file: str, transform: Callable[[onnx.ModelProto], onnx.ModelProto] | None = None, *,
               threads: int | None = None):
        """An InferenceSession for ``file`` of the bundle; ``transform`` edits the graph first
        (in memory: the bundle's files are never changed); ``threads`` overrides the thread count."""
        model = self.bundle.read_engine(file)  # checked again: a lazy session reads it long after load_bundle
        return self.from_model(transform(model) if transform is not None else model, file, threads=threads)

    def from_model(self, model: onnx.ModelProto, label: str, *, threads: int | None = None):
        """A session for an in-memory model whose external data names the bundle's weights file."""
        import onnx
        import onnxruntime as ort

        if not self.share_weights:
            return self._from_files(model, threads, label)
        names = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        options = self.options(threads)
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", self._standin.name)
        options.add_external_initializers(names, [self._ort_value(n) for n in names])
        self.check_weights()  # ONNX Runtime reads the mapped pages now: a shrunk file would be a SIGBUS
        try:
            return ort.InferenceSession(model.SerializeToString(), options, providers=self.providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail type
            if "External initializer" not in str(exc) and "external data" not in str(exc).lower():
                raise _engine_error(label, exc) from None
            warnings.warn(f"{label}: ONNX Runtime did not take the shared weights; loading it from the file",
                          RuntimeWarning, stacklevel=2)
            self.unshared.append(label)
            return self._from_files(model, threads, label)

    def _from_files(self, model, threads: int | None = None, label: str = "engine"):
        """A session that reads its external data from the bundle's own weights file."""
        import onnxruntime as ort

        options = self.options(threads)
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(self.bundle.root))
        self.check_weights(on_disk=True)
        try:
            return ort.InferenceSession(model.SerializeToString(), options, providers=self.providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail type
            raise _engine_error(label, exc) from None

    def check_weights(self, *, on_disk: bool = False) -> None:
        """BundleError unless the weights are as ``load_bundle`` found them: the mapped file has not shrunk (its
        pages are read when a session is made), and with ``on_disk`` (ONNX Runtime reads the file by its name)
        the file now at the weights' path has the manifest's size and the same header."""
        m = self.bundle.manifest
        if self._weights is not None:
            self._weights.check_size()
        if on_disk:
            path = self.bundle.weights_path
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise BundleError(f"{path}: cannot read the weights file ({exc.strerror or exc})") from None
            if size != m.files[m.weights].size or (self.bundle.layout and read_layout(path) != self.bundle.layout):
                raise BundleError(f"{path}: the weights file changed since the bundle was loaded (now {size} bytes, "
                                  f"the manifest says {m.files[m.weights].size}); update a live bundle by swapping in "
                                  f"a new bundle directory or renaming new files over the old ones")

    def _ort_value(self, name: str):
        import onnxruntime as ort

        if self._weights is None:
            m = self.bundle.manifest
            self._weights = map_weights(self.bundle.weights_path, m.files[m.weights].size)
            if self.bundle.layout and self._weights.layout != self.bundle.layout:
                self._weights.close()
                self._weights = None
                raise BundleError(f"{self.bundle.weights_path}: the weights file changed since the bundle was loaded")
        if name not in self._weights:
            raise BundleError(f"{self.bundle.weights_path}: has no tensor {name!r:.80}, which an engine reads")
        if name not in self._ort_values:
            self._ort_values[name] = ort.OrtValue.ortvalue_from_numpy(self._weights[name])
        return self._ort_values[name]

    @property
    def shared(self) -> bool:
        """True when every session built so far read its weights from the one shared copy."""
        return self.share_weights and not self.unshared

    def close(self) -> None:
        self._ort_values.clear()
        if self._weights is not None:
            self._weights.close()
        self._weights = None
        self._standin.cleanup()


def _engine_error(label: str, exc: Exception) -> Exception:
    """ONNX Runtime refusing a bundle's engine is a BundleError (the engine was checked against the manifest,
    so what is left is a graph ONNX Runtime cannot run); anything else is returned as it is."""
    if "use_per_session_threads must be false" in str(exc):  # a global pool made outside dsnet-export
        return DsnetError(f"{label}: ONNX Runtime's process-wide thread pool was created outside dsnet-export, and "
                          f"it then refuses sessions with threads of their own; load with "
                          f"OrtOptions(shared_pool=True)")
    if type(exc).__module__.startswith("onnxruntime"):
        return BundleError(f"{label}: ONNX Runtime cannot load this engine ({str(exc).strip()[:300]})")
    return exc
