"""Per-architecture export settings, declared once (as optimum's exporters keep theirs).

What differs between architectures is how exactly an export must match: a deeper or wider
network accumulates more float32 rounding.  Every check of an exported bundle (build's parity
check, ``verify --checkpoint``, ``verify --backend trt``) reads its tolerance from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..arch import ArchSpec
from ..errors import DsnetError
from ..runtime.compare import Tolerance


def _trt_defaults() -> Mapping[str, Tolerance]:
    # fp32 plans may pick other kernels than ONNX Runtime; fp16 keeps ~3 significant digits.
    return MappingProxyType({"fp32": Tolerance(atol=1e-3), "fp16": Tolerance(atol=0.0, rtol=2e-2)})


@dataclass(frozen=True)
class ExportConfig:
    """How one architecture is exported and checked."""

    opset: int = 17
    #: ONNX engines vs the torch supernet, logits and gate logits.
    tolerance: Tolerance = Tolerance(atol=1e-4, rtol=1e-5)
    #: TensorRT plans vs the bundle's ONNX engines, per plan precision.
    trt_tolerance: Mapping[str, Tolerance] = field(default_factory=_trt_defaults)

    def trt_tolerance_for(self, precision: str) -> Tolerance:
        if precision not in self.trt_tolerance:
            raise DsnetError(f"no TensorRT tolerance for precision {precision!r} "
                             f"(known: {', '.join(self.trt_tolerance)})")
        return self.trt_tolerance[precision]


DEFAULT = ExportConfig()
_CONFIGS: dict[str, ExportConfig] = {}


def register_export_config(arch_name: str, config: ExportConfig) -> ExportConfig:
    """Settings for the architecture called ``arch_name`` (others use ``DEFAULT``)."""
    if arch_name in _CONFIGS:
        raise DsnetError(f"export config for {arch_name!r} is registered twice")
    _CONFIGS[arch_name] = config
    return config


def export_config(arch: ArchSpec | str) -> ExportConfig:
    return _CONFIGS.get(arch if isinstance(arch, str) else arch.name, DEFAULT)


# The built-in architectures: ImageNet DS-MBNet (oracle-checked: its widest route's logits reach ~20, the
# relative term covers them) and the small digits/test models, which stay well inside the default.
register_export_config("ds_mbnet", ExportConfig(tolerance=Tolerance(atol=1e-4, rtol=1e-5)))
register_export_config("ds_mbnet_digits", ExportConfig(tolerance=Tolerance(atol=1e-4, rtol=1e-5)))
register_export_config("ds_mbnet_tiny", ExportConfig(tolerance=Tolerance(atol=1e-4, rtol=1e-5)))
