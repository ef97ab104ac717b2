"""The official DS-Net way of running the dynamic network ("masking"), emitted as one ONNX model.

The official code never slices at inference: after the gate every layer runs at full width
(the widest uniform width of the gated stages, ``uniform:<last>``; the stages before the gate
run at the gate's width, as in the gate engine), each sliced layer's output is multiplied by
a per-sample 0/1 channel mask (1 below the sample's route width), and each BatchNorm uses the
statistics of the sample's own width.  Here that is written from the arch spec with the
exporter's own primitives (each block by its family's ``masked_onnx`` part):

* image -> pre-gate network and gate head (exactly the gate engine's nodes);
* ``onehot = (argmax(gate_logits + gate_bias) == [0..R-1])``, an input ``gate_bias`` [R] so
  the bench can route as the dispatcher does;
* per sliced layer: full-width Conv, then ``Mul`` by ``onehot @ mask_table`` reshaped to
  [N,C,1,1]; per BatchNorm: ``(x - mean_sel) * scale_sel + shift_sel`` with
  ``mean_sel = onehot @ mean_table`` and ``scale_table[r] = gamma / sqrt(var_r + eps)``,
  ``shift_table[r] = beta``, both zero beyond route r's width (the BN's output is masked too);
  the squeeze-excite's expand output is masked as the official code masks it.

Weights come from the bundle's weights file, which stores each tensor only up to the widest
exported route.  The rest of the full-width tensors is zero-filled: those entries only ever
meet masked channels, so the logits equal each sample's own route (checked by the tests),
and a dense convolution costs the same whatever its values.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..arch import ArchSpec, block_family, iter_blocks, resolve_route
from .emit import GATE_LOGITS, IMAGE, LOGITS, emit_gate_head, emit_pre_gate
from .graph import Graph, Shape
from .layers import pooled_classifier

GATE_BIAS = "gate_bias"


class PaddedBinding:
    """Embedded initializers of any prefix shape: the stored prefix, zero-filled beyond it."""

    def __init__(self, sources: Mapping[str, np.ndarray]):
        self.sources = sources

    def bind(self, graph: Graph, key: str, shape: Shape) -> str:
        array = padded(self.sources, key, shape)
        name = graph.unique(key)
        graph.initializers[name] = numpy_helper.from_array(array, name)
        return name


def padded(sources: Mapping[str, np.ndarray], key: str, shape: Shape, fill: float = 0.0) -> np.ndarray:
    """``sources[key]`` cut or zero-filled (``fill``) to ``shape``; all ``fill`` when not stored."""
    out = np.full(shape, fill, np.float32)
    if key in sources:
        stored = sources[key]
        if stored.ndim != len(shape):
            raise ValueError(f"{key}: stored rank {stored.ndim}, asked for {shape}")
        common = tuple(slice(0, min(a, b)) for a, b in zip(stored.shape, shape))
        out[common] = stored[common]
    return out


class Selector:
    """Per-sample selections: ``onehot [N,R] @ table [R,C]`` reshaped to [N,C,1,1]."""

    def __init__(self, g: Graph, spec: ArchSpec, sources: Mapping[str, np.ndarray], gate_logits: str):
        self.g, self.spec, self.sources = g, spec, sources
        self.choices = spec.gate.routes  # gate route r runs every gated stage at choice routes[r]
        scores = g.op("Add", [gate_logits, GATE_BIAS], "select/scores")
        route = g.op("ArgMax", [scores], "select/route", axis=1, keepdims=1)  # [N,1]; ties: first, as numpy
        ids = g.constant("select/route_ids", np.arange(len(self.choices), dtype=np.int64))
        self.onehot = g.op("Cast", [g.op("Equal", [route, ids], "select/equal")], "select/onehot",
                           to=TensorProto.FLOAT)
        self._masks: dict[tuple[int, ...], str] = {}

    def widths(self, channels: tuple[int, ...]) -> list[int]:
        return [channels[c] for c in self.choices]

    def pick(self, name: str, table: np.ndarray) -> str:
        g = self.g
        table_name = g.constant(f"{name}/table", table.astype(np.float32))
        selected = g.op("MatMul", [self.onehot, table_name], f"{name}/select")
        shape = g.constant(f"{name}/shape", np.array([-1, table.shape[1], 1, 1], np.int64))
        return g.op("Reshape", [selected, shape], name)

    def mask(self, channels: tuple[int, ...]) -> str:
        """[N, channels[-1], 1, 1]: 1 for the channels below each sample's route width."""
        if channels not in self._masks:
            table = np.zeros((len(self.choices), channels[-1]), np.float32)
            for r, w in enumerate(self.widths(channels)):
                table[r, :w] = 1.0
            self._masks[channels] = self.pick(f"mask/{len(self._masks)}_{channels[-1]}", table)
        return self._masks[channels]

    def batch_norm(self, x: str, prefix: str, channels: tuple[int, ...], *, name: str) -> str:
        """Per-sample BatchNorm with each sample's own width statistics, zero beyond that width."""
        full, last, eps = channels[-1], len(channels) - 1, self.spec.bn_eps
        gamma = padded(self.sources, f"{prefix}.aux_bn.{last}.weight", (full,))
        beta = padded(self.sources, f"{prefix}.aux_bn.{last}.bias", (full,))
        mean = np.zeros((len(self.choices), full), np.float32)
        scale = np.zeros_like(mean)
        shift = np.zeros_like(mean)
        for r, (c, w) in enumerate(zip(self.choices, self.widths(channels))):
            mean[r, :w] = self.sources[f"{prefix}.aux_bn.{c}.running_mean"][:w]
            var = self.sources[f"{prefix}.aux_bn.{c}.running_var"][:w]
            scale[r, :w] = gamma[:w] / np.sqrt(var + eps)
            shift[r, :w] = beta[:w]
        g = self.g
        centred = g.op("Sub", [x, self.pick(f"{name}/mean", mean)], f"{name}/centre")
        scaled = g.op("Mul", [centred, self.pick(f"{name}/scale", scale)], f"{name}/scale_mul")
        return g.op("Add", [scaled, self.pick(f"{name}/shift", shift)], name)


def masking_width(spec: ArchSpec) -> str:
    """The route whose widths the masked network computes at: ``uniform:<last>``."""
    return f"uniform:{spec.num_uniform_choices - 1}"


def emit_masked(spec: ArchSpec, sources: Mapping[str, np.ndarray], input_hw: tuple[int, int],
                opset: int = 17) -> onnx.ModelProto:
    """image [N,C,H,W], gate_bias [R] -> logits [N,classes], gate_logits [N,R], by masking."""
    g = Graph("masked_dynamic", PaddedBinding(sources))
    gate_route = resolve_route(spec, 0)
    features, hidden = emit_pre_gate(g, spec, gate_route, IMAGE)
    gate_logits = emit_gate_head(g, spec, hidden)
    sel = Selector(g, spec, sources, gate_logits)
    cin = gate_route.widths(spec)[spec.gate.stage]  # the gate's width entering the gated stage
    x = features
    for site in iter_blocks(spec):
        if site.after_gate:
            cout = site.out_channels[-1]
            x = block_family(site.stage.block).part("masked_onnx")(g, site, x, cin, cout, sel, site.gated)
            cin = cout
    pooled_classifier(g, x, spec.num_classes, cin, LOGITS)
    image = (-1, spec.input.channels, *input_hw)
    return g.to_model([(IMAGE, image), (GATE_BIAS, (spec.num_routes,))],
                      [(LOGITS, (-1, spec.num_classes)), (GATE_LOGITS, (-1, spec.num_routes))], opset,
                      doc="DS-Net dynamic inference by full-width compute and per-sample channel masks "
                          "(the official code's way), for benchmarking")
