"""A fused engine: the gate and every route in one ONNX graph, measured against the dispatcher.

The design question of two engine calls per sample: would one session that runs the gate, takes
the argmax and then the chosen route inside the graph be cheaper than the dispatcher's two
sessions?  The fused graph is composed from the bundle's own engine files: the gate graph, then
``ArgMax`` of the biased gate logits (or a forced route), then a chain of ``If`` nodes whose
branches are the route graphs.  Initializers stay in the outer graph under their supernet names
(one copy, shared with the weights file); inside a branch each one is read through a ``Reshape``
to its own shape, which ONNX Runtime folds into a branch constant: read directly from the outer
scope, the optimizer leaves those convolutions in the slow layout (measured: 7 of 29 convs in a
narrow route, 14 in the widest).  The whole batch takes one route (the first sample's, or the
forced one), so this answers the batch-1 and fixed-route cases.

It is a bench contender, not part of the runtime: on this project's machine it measured 0.92-1.01x
the dispatcher at batch 1 on a 224x224 model, equal at batch 8, 1.2-1.4x on the 32x32 digits model
(an ``If`` costs about 0.1 ms a call), and its session holds a second folded copy of every route
(+117 MB for DS-MBNet).  The bench keeps measuring it (overhead table, ``fused`` columns).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..arch import RouteKind
from ..runtime.bundle import Bundle

GATE_BIAS, ROUTE, CHOSEN, LOGITS = "fused/gate_bias", "fused/route", "fused/chosen_route", "fused/logits"


def fused_model(bundle: Bundle) -> onnx.ModelProto:
    """Gate + every feature-consuming route of ``bundle`` in one graph (see the module docstring).

    Inputs: the image, ``fused/gate_bias`` [gate routes], ``fused/route`` int64 [] (a manifest
    route index, or -1 for the gate's choice for the first sample).  Outputs: ``fused/logits``,
    the gate logits, ``fused/chosen_route`` int64 [].
    """
    m = bundle.manifest
    gate = onnx.load(str(bundle.path(m.gate.file)), load_external_data=False)
    initializers = {t.name: t for t in gate.graph.initializer}
    constants = {
        "fused/gate_to_route": np.array(m.gate.routes, np.int64),
        "fused/zero": np.array(0, np.int64),
    }
    nodes = list(gate.graph.node) + [
        helper.make_node("Add", [m.gate.logits, GATE_BIAS], ["fused/biased"]),
        helper.make_node("ArgMax", ["fused/biased"], ["fused/argmax"], axis=1, keepdims=0),
        helper.make_node("Gather", ["fused/argmax", "fused/zero"], ["fused/first"]),
        helper.make_node("Gather", ["fused/gate_to_route", "fused/first"], ["fused/gated"]),
        helper.make_node("GreaterOrEqual", [ROUTE, "fused/zero"], ["fused/is_forced"]),
        helper.make_node("Where", ["fused/is_forced", ROUTE, "fused/gated"], [CHOSEN]),
    ]
    branches = []
    for info in (r for r in m.routes if r.kind != RouteKind.FIXED):
        route = onnx.load(str(bundle.path(info.file)), load_external_data=False)
        branches.append((info.index, _branch(route, info.index, info.input, info.output, m.gate.features,
                                             initializers, constants)))
    nodes += _if_chain(branches, constants)
    c, h, w = m.input.shape
    graph = helper.make_graph(
        nodes, "fused",
        [helper.make_tensor_value_info(m.input.name, TensorProto.FLOAT, ["N", c, h, w]),
         helper.make_tensor_value_info(GATE_BIAS, TensorProto.FLOAT, [len(m.gate.routes)]),
         helper.make_tensor_value_info(ROUTE, TensorProto.INT64, [])],
        [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["N", int(m.arch["num_classes"])]),
         helper.make_tensor_value_info(m.gate.logits, TensorProto.FLOAT, ["N", len(m.gate.routes)]),
         helper.make_tensor_value_info(CHOSEN, TensorProto.INT64, [])],
        initializer=[*initializers.values(), *(numpy_helper.from_array(v, k) for k, v in constants.items())])
    model = helper.make_model(graph, opset_imports=list(gate.opset_import), producer_name="dsnet-export")
    model.ir_version = gate.ir_version
    return model


def _branch(route: onnx.ModelProto, index: int, input_name: str, output_name: str, features: str,
            initializers: dict, constants: dict) -> onnx.GraphProto:
    """One route graph as an ``If`` branch reading ``features`` and the outer initializers."""
    prefix = f"r{index}/"
    rename = {input_name: features}
    nodes = []
    used = {name for node in route.graph.node for name in node.input}
    for tensor in route.graph.initializer:
        known = initializers.setdefault(tensor.name, tensor)
        if known.SerializeToString() != tensor.SerializeToString():
            raise ValueError(f"{tensor.name}: differs between the gate and route {index}")  # not a bundle
        if tensor.name in used:  # a branch-local name the optimizer can fold into a constant
            shape = f"{prefix}{tensor.name}/shape"
            constants[shape] = np.array(list(tensor.dims), np.int64)
            nodes.append(helper.make_node("Reshape", [tensor.name, shape], [prefix + tensor.name]))
            rename[tensor.name] = prefix + tensor.name
    for node in route.graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        del copy.input[:], copy.output[:]
        copy.input.extend(rename.get(name, name) for name in node.input)
        copy.output.extend(prefix + name for name in node.output)
        rename.update((name, prefix + name) for name in node.output)
        copy.name = prefix + node.name
        nodes.append(copy)
    return helper.make_graph(nodes, f"route_{index}", [],
                             [helper.make_tensor_value_info(rename[output_name], TensorProto.FLOAT, None)])


def _if_chain(branches: list[tuple[int, onnx.GraphProto]], constants: dict) -> list[onnx.NodeProto]:
    """``If chosen == k0: route k0 else (If chosen == k1: ... else: last route)``."""
    _, tail = branches[-1]
    for depth, (index, branch) in reversed(list(enumerate(branches[:-1]))):
        target, condition = f"fused/route{index}", f"fused/is_route{index}"
        constants[target] = np.array(index, np.int64)
        out = LOGITS if depth == 0 else f"fused/logits_from{index}"
        chain = [helper.make_node("Equal", [CHOSEN, target], [condition]),
                 helper.make_node("If", [condition], [out], then_branch=branch, else_branch=tail)]
        if depth == 0:
            return chain
        tail = helper.make_graph(chain, f"else_{index}", [],
                                 [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)])
    return [*tail.node, helper.make_node("Identity", [tail.output[0].name], [LOGITS])]  # one route: no If


class FusedEngine:
    """The fused graph in one session with the dispatcher's options: ``engine(x, route=-1) -> logits``.

    Called through an IO binding per batch size, as the dispatcher calls its engines."""

    def __init__(self, session, bundle: Bundle):
        self.session = session
        m = bundle.manifest
        self._image, self._classes = m.input.name, int(m.arch["num_classes"])
        self._bias = np.zeros(len(m.gate.routes), np.float32)
        self._bindings: dict[tuple[int, int], tuple] = {}

    def __call__(self, x: np.ndarray, route: int = -1) -> np.ndarray:
        key = (x.shape[0], route)
        entry = self._bindings.get(key)
        if entry is None:
            entry = self._bindings[key] = self._bind(x, route)
        io, bound, logits = entry
        if bound[0] is not x:
            io.bind_cpu_input(self._image, x)
            bound[0] = x
        self.session.run_with_iobinding(io)
        return logits.copy()

    def _bind(self, x: np.ndarray, route: int):
        io = self.session.io_binding()
        route_value = np.array(route, np.int64)
        logits = np.empty((x.shape[0], self._classes), np.float32)
        io.bind_cpu_input(self._image, x)
        io.bind_cpu_input(GATE_BIAS, self._bias)
        io.bind_cpu_input(ROUTE, route_value)
        io.bind_output(LOGITS, "cpu", 0, np.float32, list(logits.shape), logits.ctypes.data)
        io.bind_output(self.session.get_outputs()[1].name, "cpu")
        io.bind_output(CHOSEN, "cpu")
        return io, [x, route_value], logits
