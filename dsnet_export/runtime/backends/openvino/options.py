"""The OpenVINO backend's options (``Dispatcher.load(dir, "openvino", OpenVinoOptions(...))``)."""

from __future__ import annotations

from dataclasses import dataclass

from ....errors import DsnetError

PRECISIONS = ("f32", "bf16", "f16")


@dataclass(frozen=True)
class OpenVinoOptions:
    """How the OpenVINO backend compiles the bundle's ONNX engines.

    ``device``: an OpenVINO device name passed through as it is ('CPU', 'GPU', 'GPU.1', 'NPU', 'AUTO:GPU,CPU').
    ``precision``: the inference precision OpenVINO may compute in.  f32 by default: on CPUs with AMX or
    AVX-512 BF16, OpenVINO's own default is bf16, which moved DS-MBNet's logits by up to 7 here.
    ``threads``: OpenVINO's inference threads per compiled engine (None: its default, one per core).
    """

    device: str = "CPU"
    precision: str = "f32"
    threads: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not self.device.strip():
            raise DsnetError(f"OpenVINO device must be a device name such as CPU, GPU or NPU, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise DsnetError(f"OpenVINO precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise DsnetError(f"OpenVINO threads must be a positive integer or None, got {self.threads!r}")

    def config(self) -> dict[str, str]:
        """The ``compile_model`` properties these options mean."""
        config = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "LATENCY"}
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = str(self.threads)
        return config
