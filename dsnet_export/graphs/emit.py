"""The engines, written straight from the arch spec: each block by its family's ONNX emitter.

Emitting from the spec (rather than tracing torch) keeps every initializer named by its
supernet state-dict key, so all engines share tensors by name and TensorRT refitters can
find them; parity tests against the torch supernet carry the correctness.

Engines (``part``):
* ``gate``:  image -> (features, gate_logits), everything before the gate at the gate's widths;
* ``route``: features -> logits, everything after the gate at one route's widths;
* ``full``:  image -> logits (+ gate_logits when the route shares the gate), one whole subnet.
"""

from __future__ import annotations

from ..arch import ArchSpec, BlockSite, EnginePart, Route, block_family, gate_feature_size, gated_site, iter_blocks
from .graph import Graph
from .layers import activation, batch_norm, conv, pooled_classifier

IMAGE, FEATURES, GATE_LOGITS, LOGITS = "image", "features", "gate_logits", "logits"


def emitter(site: BlockSite):
    """The ONNX part of the site's block family."""
    return block_family(site.stage.block).part("onnx")


def emit_pre_gate(g: Graph, spec: ArchSpec, route: Route, x: str) -> tuple[str, str]:
    """Stem .. the gated block's first half; returns (features, the vector the gate head reads)."""
    widths = route.widths(spec)
    x = conv(g, x, "conv_stem.weight", spec.input.channels, widths[0], spec.stem.kernel, spec.stem.stride,
             name="stem/conv")
    x = activation(g, batch_norm(g, x, "bn1", spec.stem.channels, widths[0], spec.bn_eps, name="stem/bn"),
                   spec.activation, name="stem/act")
    if spec.stem.pool:
        x = g.op("MaxPool", [x], "stem/pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = widths[0]
    for site in iter_blocks(spec):
        block = emitter(site)
        if site.gated:
            return block.pre_gate(g, site, x, cin)
        cout = widths[1 + site.stage_index]
        x = block.block(g, site, x, cin, cout)
        cin = cout
    raise AssertionError("the gate stage is past the last stage")  # ArchSpec validation prevents this


def emit_post_gate(g: Graph, spec: ArchSpec, route: Route, features: str) -> str:
    """The gated block's second half .. the classifier, at ``route``'s widths."""
    widths = route.widths(spec)
    cin = widths[spec.gate.stage]  # the width entering the gated stage
    x = features
    for site in iter_blocks(spec):
        if not site.after_gate:
            continue
        block, cout = emitter(site), widths[1 + site.stage_index]
        x = block.post_gate(g, site, x, cin, cout) if site.gated else block.block(g, site, x, cin, cout)
        cin = cout
    return pooled_classifier(g, x, spec.num_classes, cin, LOGITS)


def emit_gate_head(g: Graph, spec: ArchSpec, hidden: str) -> str:
    site = gated_site(spec)
    return g.op("Flatten", [emitter(site).gate_head(g, site, hidden)], GATE_LOGITS, axis=1)


def feature_shape(spec: ArchSpec, route: Route, input_hw: tuple[int, int]) -> tuple[int, int, int]:
    """[C, H, W] of the gate's features for ``route`` at input size ``input_hw``."""
    return (route.widths(spec)[spec.gate.stage], *gate_feature_size(spec, input_hw))


def emit_engine(g: Graph, spec: ArchSpec, route: Route, part: EnginePart | str, input_hw: tuple[int, int],
                opset: int):
    """Emit one engine (``part``) into ``g`` and return the model."""
    image = (-1, spec.input.channels, *input_hw)
    features = (-1, *feature_shape(spec, route, input_hw))
    gate_logits = (-1, spec.num_routes)
    logits = (-1, spec.num_classes)
    part = EnginePart(part)
    if part is EnginePart.GATE:
        feats, hidden = emit_pre_gate(g, spec, route, IMAGE)
        g.op("Identity", [feats], FEATURES)
        emit_gate_head(g, spec, hidden)
        return g.to_model([(IMAGE, image)], [(FEATURES, features), (GATE_LOGITS, gate_logits)], opset)
    if part is EnginePart.ROUTE:
        emit_post_gate(g, spec, route, FEATURES)
        return g.to_model([(FEATURES, features)], [(LOGITS, logits)], opset)
    if part is EnginePart.FULL:
        feats, hidden = emit_pre_gate(g, spec, route, IMAGE)
        emit_post_gate(g, spec, route, feats)
        outputs = [(LOGITS, logits)]
        if route.shares_gate(spec):
            emit_gate_head(g, spec, hidden)
            outputs.append((GATE_LOGITS, gate_logits))
        return g.to_model([(IMAGE, image)], outputs, opset)
    raise AssertionError(part)  # EnginePart(part) refused anything else
