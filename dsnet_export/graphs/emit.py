"""ONNX emitters: the network written straight from the arch spec, one emitter per block type.

Emitting from the spec (rather than tracing torch) keeps every initializer named by its
supernet state-dict key, so all engines share tensors by name and TensorRT refitters can
find them; parity tests against the torch supernet carry the correctness.

Engines (``part``):
* ``gate``:  image -> (features, gate_logits), everything before the gate at the gate's widths;
* ``route``: features -> logits, everything after the gate at one route's widths;
* ``full``:  image -> logits (+ gate_logits when the route shares the gate), one whole subnet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..arch import ArchSpec, Route
from ..arch.cost import conv_output_size
from ..arch.spec import StageSpec
from .graph import Graph

IMAGE, FEATURES, GATE_LOGITS, LOGITS = "image", "features", "gate_logits", "logits"


@dataclass(frozen=True)
class BlockContext:
    """What an emitter needs to know about one block at one width."""

    spec: ArchSpec
    stage: StageSpec
    prefix: str                    # state-dict prefix, e.g. "blocks.3.first_block"
    in_list: tuple[int, ...]       # the block's input width choices
    out_list: tuple[int, ...]
    stride: int


# -- primitive layers ---------------------------------------------------------------------
def conv(g: Graph, x: str, key: str, cin: int, cout: int, kernel: int, stride: int, *, depthwise: bool = False,
         bias_key: str | None = None, name: str) -> str:
    weight = g.weight(key, (cout, 1 if depthwise else cin, kernel, kernel))
    inputs = [x, weight] + ([g.weight(bias_key, (cout,))] if bias_key else [])
    pad = ((stride - 1) + (kernel - 1)) // 2
    return g.op("Conv", inputs, name, kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4,
                group=cin if depthwise else 1)


def batch_norm(g: Graph, x: str, prefix: str, channels: tuple[int, ...], width: int, eps: float, *, name: str) -> str:
    """Per-width statistics (``aux_bn.{i}``), shared affine (``aux_bn.{last}``) cut to ``width``."""
    i, last = channels.index(width), len(channels) - 1
    inputs = [g.weight(f"{prefix}.aux_bn.{last}.weight", (width,)), g.weight(f"{prefix}.aux_bn.{last}.bias", (width,)),
              g.weight(f"{prefix}.aux_bn.{i}.running_mean", (width,)),
              g.weight(f"{prefix}.aux_bn.{i}.running_var", (width,))]
    return g.op("BatchNormalization", [x, *inputs], name, epsilon=eps)


def swish(g: Graph, x: str, *, name: str) -> str:
    return g.op("Mul", [x, g.op("Sigmoid", [x], f"{name}/sigmoid")], name)


# -- block emitters -----------------------------------------------------------------------
PreGate = Callable[[Graph, BlockContext, str, int], tuple[str, str]]
PostGate = Callable[[Graph, BlockContext, str, int, int], str]
_EMITTERS: dict[str, tuple[PreGate, PostGate]] = {}


def register_block_emitter(block_type: str, pre_gate: PreGate, post_gate: PostGate) -> None:
    _EMITTERS[block_type] = (pre_gate, post_gate)


def _ds_pre_gate(g: Graph, b: BlockContext, x: str, cin: int) -> tuple[str, str]:
    """dw conv -> BN -> swish -> squeeze-excite; returns (SE-scaled features, SE hidden vector)."""
    p, eps = b.prefix, b.spec.bn_eps
    hidden_width = b.spec.se_channels(b.in_list, b.stage.se_ratio)
    x = conv(g, x, f"{p}.conv_dw.weight", cin, cin, b.stage.kernel, b.stride, depthwise=True, name=f"{p}/conv_dw")
    x = swish(g, batch_norm(g, x, f"{p}.bn1", b.in_list, cin, eps, name=f"{p}/bn1"), name=f"{p}/act1")
    hidden = se_hidden(g, p, x, cin, hidden_width)
    attention = g.op("Sigmoid", [se_expand(g, p, hidden, hidden_width, cin)], f"{p}/se/sigmoid")
    return g.op("Mul", [x, attention], f"{p}/se/scale"), hidden


def se_hidden(g: Graph, p: str, x: str, cin: int, hidden_width: int) -> str:
    """Squeeze-excite squeeze: ReLU(reduce(mean_hw(x))), also the gate's input."""
    pooled = g.op("GlobalAveragePool", [x], f"{p}/se/pool")
    hidden = conv(g, pooled, f"{p}.gate.conv_reduce.weight", cin, hidden_width, 1, 1,
                  bias_key=f"{p}.gate.conv_reduce.bias", name=f"{p}/se/reduce")
    return g.op("Relu", [hidden], f"{p}/se/relu")


def se_expand(g: Graph, p: str, hidden: str, hidden_width: int, cin: int) -> str:
    """Squeeze-excite expand, before its sigmoid."""
    return conv(g, hidden, f"{p}.gate.conv_expand.weight", hidden_width, cin, 1, 1,
                bias_key=f"{p}.gate.conv_expand.bias", name=f"{p}/se/expand")


def _ds_post_gate(g: Graph, b: BlockContext, x: str, cin: int, cout: int) -> str:
    """pw conv -> BN -> swish."""
    p = b.prefix
    x = conv(g, x, f"{p}.conv_pw.weight", cin, cout, 1, 1, name=f"{p}/conv_pw")
    return swish(g, batch_norm(g, x, f"{p}.bn2", b.out_list, cout, b.spec.bn_eps, name=f"{p}/bn2"), name=f"{p}/act2")


register_block_emitter("ds", _ds_pre_gate, _ds_post_gate)


# -- networks -----------------------------------------------------------------------------
def iter_blocks(spec: ArchSpec):
    """(stage index, layer, BlockContext) for every block, in order."""
    for i, stage in enumerate(spec.stages):
        for layer in range(stage.layers):
            prefix = f"blocks.{i}.first_block" if layer == 0 else f"blocks.{i}.residual_blocks.{layer - 1}"
            in_list = spec.stage_input_channels(i) if layer == 0 else stage.channels
            yield i, layer, BlockContext(spec, stage, prefix, in_list, stage.channels,
                                         stage.stride if layer == 0 else 1)


def emit_pre_gate(g: Graph, spec: ArchSpec, route: Route, x: str) -> tuple[str, str]:
    widths = route.widths(spec)
    x = conv(g, x, "conv_stem.weight", spec.input.channels, widths[0], spec.stem.kernel, spec.stem.stride,
             name="stem/conv")
    x = swish(g, batch_norm(g, x, "bn1", spec.stem.channels, widths[0], spec.bn_eps, name="stem/bn"), name="stem/act")
    cin = widths[0]
    for i, _layer, b in iter_blocks(spec):
        pre, post = _EMITTERS[b.stage.block]
        if i == spec.gate.stage:
            return pre(g, b, x, cin)
        x = post(g, b, pre(g, b, x, cin)[0], cin, widths[1 + i])
        cin = widths[1 + i]
    raise AssertionError("the gate stage is past the last stage")  # ArchSpec validation prevents this


def emit_post_gate(g: Graph, spec: ArchSpec, route: Route, features: str) -> str:
    widths = route.widths(spec)
    cin = widths[spec.gate.stage]  # the width entering the gated stage
    x = features
    for i, layer, b in iter_blocks(spec):
        if i < spec.gate.stage:
            continue
        pre, post = _EMITTERS[b.stage.block]
        if not (i == spec.gate.stage and layer == 0):
            x = pre(g, b, x, cin)[0]
        x = post(g, b, x, cin, widths[1 + i])
        cin = widths[1 + i]
    pooled = g.op("Flatten", [g.op("GlobalAveragePool", [x], "head/pool")], "head/flatten", axis=1)
    weight = g.weight("classifier.weight", (spec.num_classes, cin))
    bias = g.weight("classifier.bias", (spec.num_classes,))
    return g.op("Gemm", [pooled, weight, bias], LOGITS, transB=1)


def emit_gate_head(g: Graph, spec: ArchSpec, hidden: str) -> str:
    gated_in = spec.stage_input_channels(spec.gate.stage)
    hidden_width = spec.se_channels(gated_in, spec.stages[spec.gate.stage].se_ratio)
    key = f"blocks.{spec.gate.stage}.first_block.gate.gate.0.weight"
    logits = conv(g, hidden, key, hidden_width, spec.num_routes, 1, 1, name="gate/head")
    return g.op("Flatten", [logits], GATE_LOGITS, axis=1)


def feature_shape(spec: ArchSpec, route: Route, input_hw: tuple[int, int]) -> tuple[int, int, int]:
    """[C, H, W] of the gate's features for ``route`` at input size ``input_hw``."""
    h, w = (conv_output_size(s, spec.stem.kernel, spec.stem.stride) for s in input_hw)
    for i in range(spec.gate.stage + 1):
        stride = spec.stages[i].stride
        for layer in range(spec.stages[i].layers if i < spec.gate.stage else 1):
            s = stride if layer == 0 else 1
            h, w = conv_output_size(h, spec.stages[i].kernel, s), conv_output_size(w, spec.stages[i].kernel, s)
    return route.widths(spec)[spec.gate.stage], h, w


def emit_engine(g: Graph, spec: ArchSpec, route: Route, part: str, input_hw: tuple[int, int], opset: int):
    """Emit one engine into ``g`` and return the model."""
    image = (-1, spec.input.channels, *input_hw)
    features = (-1, *feature_shape(spec, route, input_hw))
    gate_logits = (-1, spec.num_routes)
    logits = (-1, spec.num_classes)
    if part == "gate":
        feats, hidden = emit_pre_gate(g, spec, route, IMAGE)
        g.op("Identity", [feats], FEATURES)
        emit_gate_head(g, spec, hidden)
        return g.to_model([(IMAGE, image)], [(FEATURES, features), (GATE_LOGITS, gate_logits)], opset)
    if part == "route":
        emit_post_gate(g, spec, route, FEATURES)
        return g.to_model([(FEATURES, features)], [(LOGITS, logits)], opset)
    if part == "full":
        feats, hidden = emit_pre_gate(g, spec, route, IMAGE)
        emit_post_gate(g, spec, route, feats)
        outputs = [(LOGITS, logits)]
        if route.shares_gate(spec):
            emit_gate_head(g, spec, hidden)
            outputs.append((GATE_LOGITS, gate_logits))
        return g.to_model([(IMAGE, image)], outputs, opset)
    raise ValueError(f"unknown engine part {part!r}")
