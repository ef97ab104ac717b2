"""A small ONNX graph builder whose weights are requested by name and prefix shape.

Emitters ask ``graph.weight(key, shape)`` for "the first ``shape`` entries of supernet tensor
``key``".  What that becomes depends on the binding:

* ``PlanBinding`` only records the largest prefix each tensor needs (a dry run, to decide
  what the shared weights file stores);
* ``ExternalBinding`` adds the stored tensor as an initializer whose bytes live in the shared
  safetensors file, plus a ``Slice`` when the prefix is smaller than what is stored;
* ``EmbeddedBinding`` embeds exactly the prefix (self-contained single-file models).

Running the same emitter with each binding keeps the plan and the graphs in agreement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Shape = tuple[int, ...]


class StoredEntry(Protocol):
    """Where one tensor sits in the shared weights file (``runtime.weights.StoredTensor`` is one)."""

    shape: Shape
    offset: int
    length: int


class WeightBinding(Protocol):
    def bind(self, graph: Graph, key: str, shape: Shape) -> str: ...


@dataclass
class Graph:
    """Nodes, initializers and unique names of one ONNX graph under construction."""

    name: str
    binding: WeightBinding
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: dict[str, TensorProto] = field(default_factory=dict)
    _bound: dict[tuple[str, Shape], str] = field(default_factory=dict)
    _names: dict[str, int] = field(default_factory=dict)

    def weight(self, key: str, shape: Shape) -> str:
        """Value name holding ``tensor[key][:shape[0], :shape[1], ...]``."""
        shape = tuple(int(s) for s in shape)
        if (key, shape) not in self._bound:
            self._bound[key, shape] = self.binding.bind(self, key, shape)
        return self._bound[key, shape]

    def constant(self, name: str, array: np.ndarray) -> str:
        """A small embedded initializer (slice bounds and the like)."""
        name = self.unique(name)
        self.initializers[name] = numpy_helper.from_array(array, name)
        return name

    def unique(self, name: str) -> str:
        count = self._names.get(name, 0)
        self._names[name] = count + 1
        return name if count == 0 else f"{name}_{count}"

    def op(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        """Add a single-output node; returns its output name (also its node name)."""
        out = self.unique(name)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def to_model(self, inputs: list[tuple[str, Shape]], outputs: list[tuple[str, Shape]], opset: int,
                 doc: str = "") -> onnx.ModelProto:
        """Wrap up as a model; a leading ``-1`` in a shape becomes the dynamic batch axis ``N``."""
        def info(name: str, shape: Shape) -> onnx.ValueInfoProto:
            dims = ["N" if d == -1 else d for d in shape]
            return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)

        graph = helper.make_graph(self.nodes, self.name, [info(*i) for i in inputs], [info(*o) for o in outputs],
                                  initializer=list(self.initializers.values()), doc_string=doc)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="dsnet-export")
        # The oldest IR version that knows the opset: older runtimes (TensorRT 10.3) refuse newer IR.
        model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
        return model


class PlanBinding:
    """Dry run: remember, per tensor, the largest prefix any graph asks for."""

    def __init__(self, sources: dict[str, np.ndarray]):
        self.sources = sources
        self.needed: dict[str, Shape] = {}

    def bind(self, graph: Graph, key: str, shape: Shape) -> str:
        full = self.sources[key].shape
        if len(shape) != len(full) or any(s > f or s <= 0 for s, f in zip(shape, full)):
            raise ValueError(f"{key}: prefix {shape} does not fit the supernet tensor {full}")  # an emitter bug
        old = self.needed.get(key, shape)
        self.needed[key] = tuple(max(a, b) for a, b in zip(old, shape))
        return key


class ExternalBinding:
    """Initializers point into the shared weights file; prefixes are taken with ``Slice``."""

    def __init__(self, stored: dict[str, StoredEntry], location: str):
        self.stored, self.location = stored, location

    def bind(self, graph: Graph, key: str, shape: Shape) -> str:
        entry = self.stored[key]
        if key not in graph.initializers:
            tensor = TensorProto(name=key, dims=list(entry.shape), data_type=TensorProto.FLOAT,
                                 data_location=TensorProto.EXTERNAL)
            for field_name, value in (("location", self.location), ("offset", entry.offset), ("length", entry.length)):
                tensor.external_data.add(key=field_name, value=str(value))
            graph.initializers[key] = tensor
        if shape == entry.shape:
            return key
        tag = "x".join(map(str, shape))
        starts = graph.constant(f"{key}/slice_{tag}/starts", np.zeros(len(shape), np.int64))
        ends = graph.constant(f"{key}/slice_{tag}/ends", np.array(shape, np.int64))
        axes = graph.constant(f"{key}/slice_{tag}/axes", np.arange(len(shape), dtype=np.int64))
        return graph.op("Slice", [key, starts, ends, axes], f"{key}/slice_{tag}")


class EmbeddedBinding:
    """Each prefix embedded as its own initializer (no Slice, no external file)."""

    def __init__(self, sources: dict[str, np.ndarray]):
        self.sources = sources

    def bind(self, graph: Graph, key: str, shape: Shape) -> str:
        array = np.ascontiguousarray(self.sources[key][tuple(slice(0, s) for s in shape)])
        name = graph.unique(key)
        graph.initializers[name] = numpy_helper.from_array(array, name)
        return name
