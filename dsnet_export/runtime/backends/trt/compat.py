"""Everything that differs between the TensorRT and CUDA Python versions we support, in one place.

Supported: TensorRT 10.3 (JetPack 6) through 11.x.  Facts this module relies on (checked in the
Python bindings' own docstrings of 10.3.0, 10.13.0, 11.0.0 and 11.4.0, and NVIDIA's docs):

* ``BuilderFlag.FP16`` exists in 10.x and is gone in 11.x, whose networks are strongly typed:
  FP16 there means an FP16 graph (see ``variant.to_fp16_graph``) built with
  ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``.  ``EXPLICIT_BATCH`` is deprecated in 10 and
  gone in 11; it is never set.
* ``BuilderFlag.STRIP_PLAN`` and ``REFIT_IDENTICAL`` exist from 10.0; plain ``REFIT`` is never used
  (TensorRT's docs warn it may change numerics).
* ``OnnxParserRefitter.refit_from_bytes(model, path=None)`` exists from 10.0 (so in 10.3); the
  ``load_model_proto``/``load_initializer``/``refit_model_proto`` helpers only from 10.13 (unused).
* CUDA runtime bindings: ``cuda.bindings.runtime`` (cuda-python >= 12.6 and 13) or the older
  ``cuda.cudart``; both return tuples whose first element is the error code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType

from ....errors import DsnetError

MIN_VERSION = (10, 3)
INSTALL_HINT = ("on a Jetson: JetPack 6 (TensorRT 10.3, python3-libnvinfer) plus 'pip install cuda-python'; "
                "on a desktop GPU: pip install 'dsnet-export[trt]'")


class TrtUnavailable(DsnetError):
    """TensorRT, the CUDA bindings or a GPU is missing on this machine."""


def parse_version(text: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", text)
    if len(numbers) < 2:
        raise TrtUnavailable(f"cannot read the TensorRT version {text!r}")
    return tuple(int(n) for n in numbers[:3])


@dataclass(frozen=True)
class TrtApi:
    """The ``tensorrt`` module plus what its version means for building and refitting."""

    trt: ModuleType
    version: tuple[int, ...]

    @classmethod
    def load(cls, module: ModuleType | None = None) -> TrtApi:
        if module is None:
            try:
                import tensorrt as module
            except ImportError as exc:
                raise TrtUnavailable(f"TensorRT's Python package is not installed ({exc}); {INSTALL_HINT}") from None
        version = parse_version(module.__version__)
        if version[:2] < MIN_VERSION:
            raise TrtUnavailable(f"TensorRT {module.__version__} is too old; dsnet-export needs >= "
                                 f"{'.'.join(map(str, MIN_VERSION))}")
        return cls(module, version)

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def strongly_typed_only(self) -> bool:
        """TensorRT 11 removed the FP16 builder flag: reduced precision lives in the graph."""
        return self.version[0] >= 11

    def fp16_graph(self, precision: str) -> bool:
        """Whether the variant ONNX itself must be float16 for ``precision``."""
        return precision == "fp16" and self.strongly_typed_only

    def logger(self):
        return self.trt.Logger(self.trt.Logger.WARNING)

    def network_flags(self) -> int:
        if self.strongly_typed_only:
            return 1 << int(self.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        return 0

    def configure(self, config, *, precision: str, strip: bool, workspace_bytes: int) -> None:
        """Precision, weight stripping and workspace on a builder config."""
        trt = self.trt
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
        if precision == "fp32":
            config.clear_flag(trt.BuilderFlag.TF32)  # exact before fast: TF32 has a 10-bit mantissa
        if precision == "fp16" and not self.strongly_typed_only:
            config.set_flag(trt.BuilderFlag.FP16)
        if strip:
            config.set_flag(trt.BuilderFlag.STRIP_PLAN)
            config.set_flag(trt.BuilderFlag.REFIT_IDENTICAL)

    def refit_from_onnx(self, engine, logger, model: bytes) -> None:
        """Put the weights of ``model`` (the variant the plan was built from) into ``engine``."""
        refitter = self.trt.Refitter(engine, logger)
        parser_refitter = self.trt.OnnxParserRefitter(refitter, logger)
        if not parser_refitter.refit_from_bytes(model):
            errors = [str(parser_refitter.get_error(i)) for i in range(parser_refitter.num_errors)]
            raise DsnetError("TensorRT could not refit the plan from its ONNX: " + "; ".join(errors))
        if not refitter.refit_cuda_engine():
            missing = list(refitter.get_missing_weights())
            raise DsnetError(f"TensorRT refit failed; weights still missing: {missing[:8]}")


def load_cudart(module: ModuleType | None = None) -> ModuleType:
    """The CUDA runtime bindings, new location first."""
    if module is not None:
        return module
    try:
        from cuda.bindings import runtime
        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart
        return cudart
    except ImportError as exc:
        raise TrtUnavailable(f"the CUDA Python bindings are not installed ({exc}); pip install cuda-python") from None
