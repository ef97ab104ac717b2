"""The few CUDA runtime calls the TensorRT backend needs, with errors turned into exceptions."""

from __future__ import annotations

import ctypes
from types import ModuleType

import numpy as np

from .compat import TrtUnavailable


class CudaError(RuntimeError):
    pass


class Cuda:
    """Thin wrapper over ``cudart``: every call checks the error code it returns first."""

    def __init__(self, cudart: ModuleType):
        self.rt = cudart
        self._success = cudart.cudaError_t.cudaSuccess

    def _check(self, result, what: str):
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self._success:
            raise CudaError(f"{what} failed: {err}")
        return values[0] if len(values) == 1 else values

    def device_count(self) -> int:
        result = self.rt.cudaGetDeviceCount()
        if result[0] != self._success:
            raise TrtUnavailable(f"no usable CUDA device (cudaGetDeviceCount: {result[0]})")
        return result[1]

    def device_properties(self, device: int = 0) -> tuple[str, tuple[int, int]]:
        props = self._check(self.rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        name = props.name
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
        return str(name), (int(props.major), int(props.minor))

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self._check(self.rt.cudaFree(ptr), "cudaFree")

    def malloc_host(self, nbytes: int) -> int:
        """Pinned (page-locked) host memory, for fast asynchronous copies."""
        return int(self._check(self.rt.cudaMallocHost(max(nbytes, 1)), "cudaMallocHost"))

    def free_host(self, ptr: int) -> None:
        self._check(self.rt.cudaFreeHost(ptr), "cudaFreeHost")

    def stream(self):
        return self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def destroy_stream(self, stream) -> None:
        self._check(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def synchronize(self, stream) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def copy(self, dst: int, src: int, nbytes: int, kind: str, stream) -> None:
        """Asynchronous copy; ``kind`` is 'htod', 'dtoh' or 'dtod'."""
        kinds = self.rt.cudaMemcpyKind
        enum = {"htod": kinds.cudaMemcpyHostToDevice, "dtoh": kinds.cudaMemcpyDeviceToHost,
                "dtod": kinds.cudaMemcpyDeviceToDevice}[kind]
        self._check(self.rt.cudaMemcpyAsync(int(dst), int(src), int(nbytes), enum, stream), "cudaMemcpyAsync")


def host_view(ptr: int, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """A numpy array over host memory at ``ptr`` (e.g. a pinned buffer); no copy."""
    count = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buffer = (ctypes.c_byte * count).from_address(ptr)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)
