"""The ONNX a TensorRT plan is built from and refitted with: one engine, dense and slice-free.

The bundle's engine files take prefix ``Slice``s of shared tensors.  TensorRT would constant-fold
those slices (and BatchNorm) into new weights that a weight-stripped plan cannot refit by name,
so plans are built from a *variant* instead, regenerated on demand from the arch spec and the
bundle's weights file:

* every weight is its exact prefix, embedded (no ``Slice``, no external data);
* each BatchNorm is folded into the convolution before it, in float32 numpy;
* for ``fp16`` on TensorRT 11 (strongly typed), weights are stored as float16 and the image is
  cast to float16 on entry and the outputs back to float32 on exit.

The same inputs always give the same bytes, so a stripped plan can be refitted with weights
identical to the ones it was built with (what ``REFIT_IDENTICAL`` requires); the manifest keeps
each variant's sha256 to prove it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ....arch import ArchSpec, EnginePart, RouteKind
from ....graphs.emit import emit_engine
from ....graphs.graph import EmbeddedBinding, Graph
from ...manifest import Manifest

OPSET = 17


@dataclass(frozen=True)
class Variant:
    engine: str      # the bundle engine file it stands for, e.g. "route_2.onnx"
    model: bytes     # serialized ONNX
    input: str
    outputs: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model).hexdigest()


def engine_parts(manifest: Manifest) -> dict[str, tuple[str, object]]:
    """Engine file -> (part, route) for every engine of a bundle."""
    spec = ArchSpec.from_dict(manifest.arch)
    gate_route = manifest.routes[manifest.gate.routes[0]]
    parts = {manifest.gate.file: (EnginePart.GATE, gate_route.spec_route(spec))}
    for r in manifest.routes:
        parts[r.file] = (RouteKind(r.kind).engine_part, r.spec_route(spec))
    return parts


def make_variant(manifest: Manifest, weights: dict[str, np.ndarray], engine: str, *, fp16_graph: bool) -> Variant:
    """The TensorRT variant of one engine of the bundle."""
    spec = ArchSpec.from_dict(manifest.arch)
    part, route = engine_parts(manifest)[engine]
    hw = tuple(manifest.input.shape[1:])
    model = emit_engine(Graph(engine, EmbeddedBinding(weights)), spec, route, part, hw, OPSET)
    fold_batchnorm(model)
    if fp16_graph:
        to_fp16_graph(model)
    model.producer_name = "dsnet-export (TensorRT variant)"
    return Variant(engine, model.SerializeToString(deterministic=True), model.graph.input[0].name,
                   tuple(o.name for o in model.graph.output))


def fold_batchnorm(model: onnx.ModelProto) -> None:
    """Conv -> BatchNormalization becomes one Conv with folded weight and bias (in place)."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    producer = {out: node for node in graph.node for out in node.output}
    kept = []
    for node in graph.node:
        conv = producer.get(node.input[0]) if node.op_type == "BatchNormalization" else None
        if conv is None or conv.op_type != "Conv" or consumers[conv.output[0]] != 1:
            kept.append(node)
            continue
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (numpy_helper.to_array(inits[n]) for n in node.input[1:5])
        weight = numpy_helper.to_array(inits[conv.input[1]])
        bias = numpy_helper.to_array(inits[conv.input[2]]) if len(conv.input) > 2 else np.zeros_like(mean)
        scale = (gamma / np.sqrt(var + np.float32(eps))).astype(np.float32)
        folded_w = (weight * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
        folded_b = ((bias - mean) * scale + beta).astype(np.float32)
        w_name, b_name = f"{conv.name}/folded_weight", f"{conv.name}/folded_bias"
        graph.initializer.extend([numpy_helper.from_array(folded_w, w_name), numpy_helper.from_array(folded_b, b_name)])
        del conv.input[1:]
        conv.input.extend([w_name, b_name])
        conv.output[0] = node.output[0]  # the Conv now produces what the BatchNorm did
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    survivors = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(survivors)


def to_fp16_graph(model: onnx.ModelProto) -> None:
    """Float16 weights, the input cast to float16 on entry and every output cast back to float32."""
    graph = model.graph
    for t in graph.initializer:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    image = graph.input[0].name
    half_input = f"{image}/fp16"
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == image:
                node.input[i] = half_input
    casts_in = [helper.make_node("Cast", [image], [half_input], name=half_input, to=TensorProto.FLOAT16)]
    casts_out = []
    for out in graph.output:
        half = f"{out.name}/fp16"
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == out.name:
                    node.output[i] = half
        casts_out.append(helper.make_node("Cast", [half], [out.name], name=f"{out.name}/fp32", to=TensorProto.FLOAT))
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
