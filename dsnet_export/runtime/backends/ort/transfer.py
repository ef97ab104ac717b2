"""Moving images and the gate's features through the engines with IO binding.

Between two engine runs every Python or numpy operation meets cold caches (the engines just
evicted it) and costs several times what it costs in a loop of its own, so a call does as
little as it can:

``HostTransfer`` (CPU provider): every engine call goes through an IO binding made once per
thread, engine and batch size and then reused.  Its outputs are bound to buffers it owns; its
input stays bound while the caller passes the same array (the gate's features buffer, or an
image buffer the caller refills), because a binding reads the array's memory at run time.  A
call is then one ``run_with_iobinding`` and a copy of the small outputs the caller keeps.

``DeviceTransfer`` (CUDA / TensorRT providers): the features stay in device memory; the rows of
each route's samples are gathered on the device by a one-node ``Gather`` session and bound
straight into the route engine; only gate logits and route logits come back to the host.
It also runs with device 'cpu', which is how the tests exercise it on machines without a GPU.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .finite import FINITE_OUTPUT

#: Bindings kept per thread (engine x batch size); the oldest goes first beyond this.
MAX_BINDINGS_PER_THREAD = 64


@dataclass(frozen=True)
class GateNames:
    """The gate engine's tensor names (the engine also carries ``FINITE_OUTPUT``, see finite.py)."""

    image: str
    features: str
    logits: str
    features_shape: tuple[int, ...]
    num_routes: int


def fast_run(session, io) -> Callable[[], None]:
    """``session.run_with_iobinding(io)`` as a bare call into ONNX Runtime.

    The public wrapper adds per-call Python checks for WebGPU graph capture (unused on these
    providers); the binding was made from this session, which is the other thing it checks.
    Falls back to the public method if a future onnxruntime renames the internals.
    """
    raw_session, raw_io = getattr(session, "_sess", None), getattr(io, "_iobinding", None)
    if raw_io is not None and callable(getattr(raw_session, "run_with_iobinding", None)):
        return functools.partial(raw_session.run_with_iobinding, raw_io, None)
    return functools.partial(session.run_with_iobinding, io)


class _Binding:
    """One engine's IO binding at one batch size, with the output buffers it writes into."""

    __slots__ = ("io", "input_name", "bound", "outputs", "run_bound")

    def __init__(self, session, input_name: str, outputs: dict[str, tuple[tuple[int, ...], type]]):
        self.input_name = input_name
        self.io = session.io_binding()
        self.bound: np.ndarray | None = None  # the array bound as input (kept alive while bound)
        self.outputs = []
        for name, (shape, dtype) in outputs.items():
            buffer = np.empty(shape, dtype)
            self.io.bind_output(name, "cpu", 0, dtype, list(shape), buffer.ctypes.data)
            self.outputs.append(buffer)
        self.run_bound = fast_run(session, self.io)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Run on ``x`` (C-contiguous); the outputs are this binding's own buffers."""
        if x is not self.bound:  # the same array object stays bound, whatever it now holds
            self.io.bind_cpu_input(self.input_name, x)
            self.bound = x
        self.run_bound()
        return self.outputs


class HostTransfer:
    """Per-thread cached IO bindings over host (numpy) buffers.

    ``session_for(file, n)`` gives an engine's session for calls of ``n`` samples; it is asked only
    when a binding is made."""

    def __init__(self, session_for: Callable[[str, int], object]):
        self._session_for = session_for
        self._local = threading.local()

    def _cache(self) -> dict:
        try:
            return self._local.bindings
        except AttributeError:
            cache = self._local.bindings = {}
            return cache

    def _bind(self, cache: dict, key: tuple, input_name: str, outputs: dict) -> _Binding:
        if len(cache) >= MAX_BINDINGS_PER_THREAD:
            del cache[next(iter(cache))]
        binding = cache[key] = _Binding(self._session_for(*key), input_name, outputs)
        return binding

    def run_gate(self, file: str, x: np.ndarray, names: GateNames):
        cache = self._cache()
        key = (file, x.shape[0])
        binding = cache.get(key) or self._bind(cache, key, names.image, _gate_outputs(names, x.shape[0]))
        outputs = binding.run(x)
        # the features stay in the buffer; the caller keeps the logits
        return outputs[0], outputs[1].copy(), bool(outputs[2])

    def run_route(self, file: str, features: np.ndarray, rows: np.ndarray | None, names: tuple[str, str],
                  classes: int) -> np.ndarray:
        x = features if rows is None else np.take(features, rows, axis=0)
        cache = self._cache()
        key = (file, x.shape[0])
        binding = cache.get(key) or self._bind(cache, key, names[0], {names[1]: ((x.shape[0], classes), np.float32)})
        return binding.run(x)[0].copy()

    def bound(self, file: str, n: int) -> Callable[[], None]:
        """The bare engine run this thread's binding for ``file`` at batch ``n`` makes (inputs as last
        bound): what a call costs with nothing around it, for measurements."""
        return self._cache()[file, n].run_bound

    def clear(self) -> None:
        """Drop every thread's bindings (and with them the sessions and buffers they hold)."""
        self._local = threading.local()


class DeviceTransfer:
    """Features kept on ``device`` ('cuda', or 'cpu' for tests) between gate and routes."""

    def __init__(self, device: str, gather_session):
        self.device, self._gather = device, gather_session

    def run_gate(self, session, x: np.ndarray, names: GateNames):
        gate_logits = np.empty((x.shape[0], names.num_routes), np.float32)
        finite = np.zeros((), np.bool_)
        io = session.io_binding()
        io.bind_cpu_input(names.image, x)
        io.bind_output(names.features, self.device)
        _bind_host_output(io, names.logits, gate_logits)
        _bind_host_output(io, FINITE_OUTPUT, finite)
        session.run_with_iobinding(io)
        return io.get_outputs()[0], gate_logits, bool(finite)

    def run_route(self, session, features, rows, names, classes: int) -> np.ndarray:
        input_name, output_name = names
        if rows is not None:
            gather = self._gather.io_binding()
            gather.bind_ortvalue_input("features", features)
            gather.bind_cpu_input("rows", rows.astype(np.int64))
            gather.bind_output("gathered", self.device)
            self._gather.run_with_iobinding(gather)
            features = gather.get_outputs()[0]
        out = np.empty((features.shape()[0], classes), np.float32)
        io = session.io_binding()
        io.bind_ortvalue_input(input_name, features)
        _bind_host_output(io, output_name, out)
        session.run_with_iobinding(io)
        return out


def _gate_outputs(names: GateNames, n: int) -> dict:
    return {names.features: ((n, *names.features_shape), np.float32),
            names.logits: ((n, names.num_routes), np.float32),
            FINITE_OUTPUT: ((), np.bool_)}


def _bind_host_output(io, name: str, buffer: np.ndarray) -> None:
    io.bind_output(name, "cpu", 0, buffer.dtype, list(buffer.shape), buffer.ctypes.data)


def gather_model_bytes(opset: int = 17) -> bytes:
    """A one-node model: gathered = features[rows] along the batch axis."""
    from onnx import TensorProto, helper

    node = helper.make_node("Gather", ["features", "rows"], ["gathered"], axis=0)
    graph = helper.make_graph(
        [node], "gather_rows",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("rows", TensorProto.INT64, ["M"])],
        [helper.make_tensor_value_info("gathered", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="dsnet-export")
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    return model.SerializeToString()
