"""The ``ds`` block in ONNX: the engines' emitters and the full-width masked form the bench runs."""

from __future__ import annotations

from ...arch.blocks import BlockSite
from ...graphs.graph import Graph
from ...graphs.layers import activation, batch_norm, conv
from ...graphs.masking import Selector
from . import se_width, shortcut_conv_key, shortcut_convolves, shortcut_pools


def block(g: Graph, site: BlockSite, x: str, cin: int, cout: int) -> str:
    """The whole block (a block the gate does not split): both halves, then the official shortcut if any."""
    out = post_gate(g, site, pre_gate(g, site, x, cin)[0], cin, cout)
    if not site.stage.residual:
        return out
    return g.op("Add", [out, _shortcut(g, site, x, cin, cout)], f"{site.prefix}/add")


def _shortcut(g: Graph, site: BlockSite, x: str, cin: int, cout: int, sel: Selector | None = None) -> str:
    """[2x2 average pool, ceil mode, padding not counted] [1x1 projection, masked when ``sel``]."""
    p = site.prefix
    if shortcut_pools(site):
        x = g.op("AveragePool", [x], f"{p}/downsample/pool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1,
                 count_include_pad=0)
    if shortcut_convolves(site):
        x = conv(g, x, shortcut_conv_key(site), cin, cout, 1, 1, name=f"{p}/downsample/conv")
        if sel is not None:
            x = g.op("Mul", [x, sel.mask(site.out_channels)], f"{p}/downsample/mask")
    return x


def pre_gate(g: Graph, site: BlockSite, x: str, cin: int) -> tuple[str, str]:
    """dw conv -> BN -> act -> squeeze-excite; returns (SE-scaled features, SE hidden vector)."""
    p = site.prefix
    x = _depthwise(g, site, x, cin)
    x = activation(g, batch_norm(g, x, f"{p}.bn1", site.in_channels, cin, site.spec.bn_eps, name=f"{p}/bn1"),
                   site.spec.activation, name=f"{p}/act1")
    hidden = _se_hidden(g, site, x, cin)
    attention = g.op("Sigmoid", [_se_expand(g, site, hidden, cin)], f"{p}/se/sigmoid")
    return g.op("Mul", [x, attention], f"{p}/se/scale"), hidden


def post_gate(g: Graph, site: BlockSite, x: str, cin: int, cout: int) -> str:
    """pw conv -> BN -> act."""
    p = site.prefix
    x = _pointwise(g, site, x, cin, cout)
    return activation(g, batch_norm(g, x, f"{p}.bn2", site.out_channels, cout, site.spec.bn_eps, name=f"{p}/bn2"),
                      site.spec.activation, name=f"{p}/act2")


def gate_head(g: Graph, site: BlockSite, hidden: str) -> str:
    """One logit per gate route from the SE hidden vector: [N, routes, 1, 1]."""
    return conv(g, hidden, f"{site.prefix}.gate.gate.0.weight", se_width(site), site.spec.num_routes, 1, 1,
                name="gate/head")


def masked(g: Graph, site: BlockSite, x: str, cin: int, cout: int, sel: Selector, after_gate: bool) -> str:
    """dw -> mask -> BN -> act -> SE (expand masked) | pw -> mask -> BN -> act, at full width.

    ``after_gate``: the gated block itself, whose first half the pre-gate network already ran."""
    p, residual = site.prefix, x
    if not after_gate:
        mask_in = sel.mask(site.in_channels)
        x = g.op("Mul", [_depthwise(g, site, x, cin), mask_in], f"{p}/conv_dw/mask")
        x = activation(g, sel.batch_norm(x, f"{p}.bn1", site.in_channels, name=f"{p}/bn1"), site.spec.activation,
                       name=f"{p}/act1")
        hidden = _se_hidden(g, site, x, cin)
        attention = g.op("Mul", [_se_expand(g, site, hidden, cin), mask_in], f"{p}/se/expand/mask")
        x = g.op("Mul", [x, g.op("Sigmoid", [attention], f"{p}/se/sigmoid")], f"{p}/se/scale")
    x = g.op("Mul", [_pointwise(g, site, x, cin, cout), sel.mask(site.out_channels)], f"{p}/conv_pw/mask")
    x = activation(g, sel.batch_norm(x, f"{p}.bn2", site.out_channels, name=f"{p}/bn2"), site.spec.activation,
                   name=f"{p}/act2")
    if not site.stage.residual:
        return x
    return g.op("Add", [x, _shortcut(g, site, residual, cin, cout, sel)], f"{p}/add")


def _depthwise(g: Graph, site: BlockSite, x: str, cin: int) -> str:
    return conv(g, x, f"{site.prefix}.conv_dw.weight", cin, cin, site.stage.kernel, site.stride, depthwise=True,
                name=f"{site.prefix}/conv_dw")


def _pointwise(g: Graph, site: BlockSite, x: str, cin: int, cout: int) -> str:
    return conv(g, x, f"{site.prefix}.conv_pw.weight", cin, cout, 1, 1, name=f"{site.prefix}/conv_pw")


def _se_hidden(g: Graph, site: BlockSite, x: str, cin: int) -> str:
    """Squeeze-excite squeeze: ReLU(reduce(mean_hw(x))), also the gate's input."""
    p = site.prefix
    pooled = g.op("GlobalAveragePool", [x], f"{p}/se/pool")
    hidden = conv(g, pooled, f"{p}.gate.conv_reduce.weight", cin, se_width(site), 1, 1,
                  bias_key=f"{p}.gate.conv_reduce.bias", name=f"{p}/se/reduce")
    return g.op("Relu", [hidden], f"{p}/se/relu")


def _se_expand(g: Graph, site: BlockSite, hidden: str, cin: int) -> str:
    """Squeeze-excite expand, before its sigmoid."""
    p = site.prefix
    return conv(g, hidden, f"{p}.gate.conv_expand.weight", se_width(site), cin, 1, 1,
                bias_key=f"{p}.gate.conv_expand.bias", name=f"{p}/se/expand")
