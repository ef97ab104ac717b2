"""Stand-ins for ``tensorrt`` (both API generations) and the CUDA runtime bindings, for machines
without a GPU.

They implement exactly the calls dsnet-export makes, check the rules TensorRT states (flags per
version, profiles, refit with identical weights, memory kinds in copies) and compute with ONNX
Runtime: a "plan" is the ONNX it was built from (weights zeroed when stripped), so an engine that
was not refitted, or refitted wrongly, gives wrong answers or raises.  Precision is honoured the
way TensorRT may use it: a float16 graph (strongly typed) runs as it is, and a float32 graph built
with ``BuilderFlag.FP16`` runs entirely in float16 (weights and every activation; the engine's
inputs and outputs stay float32), so a plan whose FP16 flag was dropped, or set for fp32, shows.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.machinery
import json
import types
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


# -- CUDA runtime ----------------------------------------------------------------------------
@dataclass
class FakeCudart:
    gpu: bytes = b"NVIDIA Jetson Orin"
    cc: tuple = (8, 7)
    devices: int = 1
    device_mem: dict = field(default_factory=dict)
    host_mem: dict = field(default_factory=dict)
    copies: list = field(default_factory=list)

    class cudaError_t:  # noqa: N801 - the real enum's name
        cudaSuccess = 0
        cudaErrorNoDevice = 100

    class cudaMemcpyKind:  # noqa: N801
        cudaMemcpyHostToDevice = "htod"
        cudaMemcpyDeviceToHost = "dtoh"
        cudaMemcpyDeviceToDevice = "dtod"

    def cudaGetDeviceCount(self):  # noqa: N802
        return (0, self.devices) if self.devices else (self.cudaError_t.cudaErrorNoDevice, 0)

    def cudaGetDeviceProperties(self, device):  # noqa: N802
        return 0, types.SimpleNamespace(name=self.gpu + b"\0" * 8, major=self.cc[0], minor=self.cc[1])

    def _alloc(self, table, n):
        buf = np.zeros(n, np.uint8)
        table[buf.ctypes.data] = buf
        return 0, buf.ctypes.data

    def cudaMalloc(self, n):  # noqa: N802
        return self._alloc(self.device_mem, n)

    def cudaMallocHost(self, n):  # noqa: N802
        return self._alloc(self.host_mem, n)

    def cudaFree(self, ptr):  # noqa: N802
        self.device_mem.pop(ptr)
        return (0,)

    def cudaFreeHost(self, ptr):  # noqa: N802
        self.host_mem.pop(ptr)
        return (0,)

    def cudaStreamCreate(self):  # noqa: N802
        return 0, FakeStream()

    def cudaStreamDestroy(self, stream):  # noqa: N802
        return (0,)

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (0,)

    def _owner(self, table, ptr, n):
        return any(base <= ptr and ptr + n <= base + buf.size for base, buf in table.items())

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):  # noqa: N802
        src_table, dst_table = {"htod": (self.host_mem, self.device_mem), "dtoh": (self.device_mem, self.host_mem),
                                "dtod": (self.device_mem, self.device_mem)}[kind]
        assert self._owner(src_table, src, n) and self._owner(dst_table, dst, n), f"bad {kind} copy"
        ctypes.memmove(dst, src, n)
        self.copies.append(kind)
        return (0,)


class FakeStream:
    def __int__(self):
        return 0xC0FFEE


def install_cudart(monkeypatch, cudart: FakeCudart, location: str = "new") -> None:
    """Make ``from cuda.bindings import runtime`` (new) or ``from cuda import cudart`` (old) find it."""
    import sys

    cuda = types.ModuleType("cuda")
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    if location == "new":
        bindings = types.ModuleType("cuda.bindings")
        bindings.runtime = cudart
        cuda.bindings = bindings
        monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    else:
        cuda.cudart = cudart
        monkeypatch.setitem(sys.modules, "cuda.cudart", cudart)
        monkeypatch.setitem(sys.modules, "cuda.bindings", None)


# -- TensorRT --------------------------------------------------------------------------------
def make_fake_trt(version: str = "10.3.0") -> types.ModuleType:
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # torch._dynamo looks modules up by spec
    trt.__version__ = version
    trt.log = []

    class Logger:
        WARNING = 2

        def __init__(self, level=None):
            self.level = level

    flags = ["TF32", "STRIP_PLAN", "REFIT", "REFIT_IDENTICAL", "REFIT_INDIVIDUAL"] + (["FP16"] if major < 11 else [])
    trt.BuilderFlag = types.SimpleNamespace(**{f: f for f in flags})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    if major < 11:
        trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH = 0
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.Logger = Logger

    class Network:
        def __init__(self, flags):
            self.flags, self.model = flags, None

    class Parser:
        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0

        def parse(self, model, path=None):
            onnx.checker.check_model(onnx.load_from_string(model))
            self.network.model = model
            return True

        def get_error(self, i):
            return "no error"

    class Config:
        def __init__(self):
            self.flags = {"TF32"}  # TensorRT enables TF32 by default
            self.pool, self.profiles, self.cache = {}, [], None

        def set_flag(self, flag):
            assert flag in flags, f"TensorRT {version} has no BuilderFlag.{flag}"
            self.flags.add(flag)

        def clear_flag(self, flag):
            self.flags.discard(flag)

        def set_memory_pool_limit(self, pool, size):
            self.pool[pool] = size

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)

        def create_timing_cache(self, data):
            return types.SimpleNamespace(data=bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            data = self.cache.data + b"+"
            return types.SimpleNamespace(serialize=lambda: data)

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            assert all(a <= b <= c for a, b, c in zip(lo, opt, hi)), (lo, opt, hi)
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags=0):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            model = onnx.load_from_string(network.model)
            fp16_graph = any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
            strongly_typed = bool(network.flags & (1 << trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
            assert not fp16_graph or strongly_typed, "an fp16 graph needs a strongly typed network"
            assert not (fp16_graph and "FP16" in config.flags), "fp16 is either the graph's or the flag's"
            assert not (strongly_typed and "FP16" in config.flags), "a strongly typed network takes no FP16 flag"
            assert len(config.profiles) == 1
            stripped = "STRIP_PLAN" in config.flags
            assert not stripped or "REFIT_IDENTICAL" in config.flags
            assert "REFIT" not in config.flags, "plain REFIT may change numerics"
            header = {"stripped": stripped, "flags": sorted(config.flags), "profile": config.profiles[0].shapes,
                      "weights_sha": hashlib.sha256(network.model).hexdigest()}
            if stripped:
                for t in model.graph.initializer:  # what a stripped plan leaves out
                    if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
                        zeros = np.zeros_like(numpy_helper.to_array(t))
                        t.CopyFrom(numpy_helper.from_array(zeros, t.name))
            trt.log.append(("build", header))
            return json.dumps(header).encode() + b"\n" + model.SerializeToString()

    class Engine:
        def __init__(self, plan):
            head, body = plan.split(b"\n", 1)
            self.header, self.model, self.refitted = json.loads(head), body, False

        def create_execution_context(self):
            if self.header["stripped"] and not self.refitted:
                raise AssertionError("a weight-stripped engine ran before it was refitted")
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            return Engine(bytes(plan))

    class Refitter:
        def __init__(self, engine, logger):
            self.engine, self.pending = engine, None

        def refit_cuda_engine(self):
            if self.pending is None:
                return False
            self.engine.model, self.engine.refitted = self.pending, True
            return True

        def get_missing_weights(self):
            return [] if self.pending is not None else ["all"]

    class ParserRefitter:
        def __init__(self, refitter, logger):
            self.refitter, self.num_errors = refitter, 0

        def refit_from_bytes(self, model, path=None):
            # REFIT_IDENTICAL: the weights must be the ones the plan was built with.
            if hashlib.sha256(model).hexdigest() != self.refitter.engine.header["weights_sha"]:
                self.num_errors = 1
                return False
            self.refitter.pending = model
            return True

        def get_error(self, i):
            return "weights differ from the build's"

    class Context:
        def __init__(self, engine):
            self.engine, self.shapes, self.addresses = engine, {}, {}
            model = _in_float16(engine.model) if "FP16" in engine.header["flags"] else engine.model
            self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])

        def set_input_shape(self, name, shape):
            lo, _, hi = self.engine.header["profile"][name]
            if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
                return False
            self.shapes[name] = tuple(shape)
            return True

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream_handle):
            assert isinstance(stream_handle, int)
            (name, shape), = self.shapes.items()
            feed = {name: _view(self.addresses[name], shape).copy()}
            names = [o.name for o in self.session.get_outputs()]
            for out_name, value in zip(names, self.session.run(names, feed)):
                _view(self.addresses[out_name], value.shape)[...] = value
            return True

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, Parser, Runtime
    trt.Refitter, trt.OnnxParserRefitter = Refitter, ParserRefitter
    return trt


def _in_float16(model: bytes) -> bytes:
    """The float32 ONNX ``model`` computed in float16, as a plan built with ``BuilderFlag.FP16`` may run it:
    float16 weights, each float32 input cast to float16 on entry and each output back to float32 on exit
    (the fake's own conversion, independent of dsnet-export's ``to_fp16_graph``)."""
    from onnx import TensorProto, helper

    proto = onnx.load_from_string(model)
    graph = proto.graph
    for t in graph.initializer:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for node in graph.node:
        assert node.op_type != "Constant", "no float16 rule for Constant nodes in the fake"
    entry, leave = [], []
    for inp in graph.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            for node in graph.node:
                node.input[:] = [f"{inp.name}/half" if n == inp.name else n for n in node.input]
            entry.append(helper.make_node("Cast", [inp.name], [f"{inp.name}/half"], to=TensorProto.FLOAT16))
    for out in graph.output:
        if out.type.tensor_type.elem_type == TensorProto.FLOAT:
            for node in graph.node:  # its producer and any node that also reads it use the float16 tensor
                node.output[:] = [f"{out.name}/half" if n == out.name else n for n in node.output]
                node.input[:] = [f"{out.name}/half" if n == out.name else n for n in node.input]
            leave.append(helper.make_node("Cast", [f"{out.name}/half"], [out.name], to=TensorProto.FLOAT))
    nodes = [*entry, *graph.node, *leave]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # float32 shapes recorded for what is now float16
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def _view(ptr: int, shape) -> np.ndarray:
    n = int(np.prod(shape))
    return np.frombuffer((ctypes.c_float * n).from_address(ptr), np.float32).reshape(shape)
