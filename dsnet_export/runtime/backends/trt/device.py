"""This device and its tag: TensorRT plans are specific to one GPU model and one TensorRT version."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .compat import TrtApi, TrtUnavailable
from .cuda import Cuda


@dataclass(frozen=True)
class DeviceInfo:
    gpu: str
    compute_capability: tuple[int, int]
    tensorrt_version: str

    @property
    def tag(self) -> str:
        return device_tag(self.gpu, self.compute_capability, self.tensorrt_version)


def device_tag(gpu: str, compute_capability: tuple[int, int], tensorrt_version: str) -> str:
    """e.g. ('Orin', (8, 7), '10.3.0') -> 'orin-sm87-trt10.3.0' (safe as a directory name)."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-") or "gpu"
    version = re.sub(r"[^0-9.]+", "", tensorrt_version) or "unknown"
    return f"{slug}-sm{compute_capability[0]}{compute_capability[1]}-trt{version}"


def current_device(api: TrtApi, cuda: Cuda) -> DeviceInfo:
    """The first CUDA device with the TensorRT version ``api`` loaded (what plans are built for and loaded on)."""
    if cuda.device_count() < 1:
        raise TrtUnavailable("no CUDA device found")
    gpu, cc = cuda.device_properties(0)
    return DeviceInfo(gpu, cc, api.version_text)
