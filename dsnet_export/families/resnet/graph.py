"""``basic`` and ``bottleneck`` in ONNX: the engines' emitters and the full-width masked form the bench runs."""

from __future__ import annotations

from ...arch.blocks import BlockSite, needs_projection
from ...graphs.graph import Graph
from ...graphs.layers import activation, batch_norm, conv
from ...graphs.masking import Selector
from . import body, gate_width, step_width


def pre_gate(g: Graph, site: BlockSite, x: str, cin: int) -> tuple[str, str]:
    """Nothing of the block: (its input, the gate's hidden vector ReLU(reduce(pool(input)))); no gate, no vector."""
    if not site.gated:
        return x, ""
    p = site.prefix
    pooled = g.op("GlobalAveragePool", [x], f"{p}/gate/pool")
    hidden = conv(g, pooled, f"{p}.gate.conv_reduce.weight", cin, gate_width(site), 1, 1,
                  bias_key=f"{p}.gate.conv_reduce.bias", name=f"{p}/gate/reduce")
    return x, g.op("Relu", [hidden], f"{p}/gate/relu")


def gate_head(g: Graph, site: BlockSite, hidden: str) -> str:
    """One logit per gate route: [N, routes, 1, 1]."""
    return conv(g, hidden, f"{site.prefix}.gate.gate.0.weight", gate_width(site), site.spec.num_routes, 1, 1,
                name="gate/head")


def post_gate(g: Graph, site: BlockSite, x: str, cin: int, cout: int) -> str:
    """The whole block: the gate computed nothing of it."""
    return block(g, site, x, cin, cout)


def block(g: Graph, site: BlockSite, x: str, cin: int, cout: int) -> str:
    """act(body(x) + shortcut(x)) at widths ``cin -> cout``."""
    return _residual(g, site, x, cin, cout)


def masked(g: Graph, site: BlockSite, x: str, cin: int, cout: int, sel: Selector, after_gate: bool) -> str:
    """The block at full width, every convolution's output and BatchNorm masked to each sample's route width."""
    return _residual(g, site, x, cin, cout, sel)


def _residual(g: Graph, site: BlockSite, x: str, cin: int, cout: int, sel: Selector | None = None) -> str:
    """The block at the route's widths, or (``sel``) at full width with per-sample masks and statistics."""
    p, out, width = site.prefix, x, cin
    steps = body(site)
    for i, step in enumerate(steps):
        w = step.out_channels[-1] if sel else step_width(step, site, cout)
        out = conv(g, out, f"{p}.conv{step.n}.weight", width, w, step.kernel, step.stride, name=f"{p}/conv{step.n}")
        out = _norm(g, site, out, f"{p}.bn{step.n}", step.out_channels, w, sel, name=f"{p}/bn{step.n}")
        if i < len(steps) - 1:
            out = activation(g, out, site.spec.activation, name=f"{p}/act{step.n}")
        width = w
    shortcut = x
    if needs_projection(site):
        shortcut = conv(g, x, f"{p}.downsample.0.weight", cin, cout, 1, site.stride, name=f"{p}/downsample/conv")
        shortcut = _norm(g, site, shortcut, f"{p}.downsample.1", site.out_channels, cout, sel,
                         name=f"{p}/downsample/bn")
    return activation(g, g.op("Add", [out, shortcut], f"{p}/add"), site.spec.activation, name=f"{p}/act_out")


def _norm(g: Graph, site: BlockSite, x: str, prefix: str, channels: tuple[int, ...], width: int,
          sel: Selector | None, *, name: str) -> str:
    """BatchNorm at ``width``; with ``sel``, the full-width output masked first, then per-sample statistics."""
    if sel is None:
        return batch_norm(g, x, prefix, channels, width, site.spec.bn_eps, name=name)
    return sel.batch_norm(g.op("Mul", [x, sel.mask(channels)], f"{name}/mask"), prefix, channels, name=name)
