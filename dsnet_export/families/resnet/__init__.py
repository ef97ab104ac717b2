"""``basic`` and ``bottleneck``: ResNet's residual blocks, slimmable.

Layout as torchvision's ResNet (v1.5: the stride sits on the 3x3 convolution), with DS-Net's per-width
BatchNorm statistics (``aux_bn.{i}``) and prefix-sliced convolutions:

* ``basic`` (ResNet-18/34): 3x3 (stride) -> BN -> act -> 3x3 -> BN;
* ``bottleneck`` (ResNet-50/101): 1x1 -> BN -> act -> 3x3 (stride) -> BN -> act -> 1x1 -> BN, the inner width a
  quarter of the output width at every width choice (ResNet's expansion of 4);

then ``act(body + shortcut)``, the shortcut being the input itself, or a sliced 1x1 convolution (with the stride)
and a per-width BatchNorm (``downsample.0``/``downsample.1``, torchvision's names) when the stride is above 1 or
the widest input and output widths differ.  Training starts with every block's last BatchNorm scale at zero (the
official ``init_residual_norm``).

The gate of a residual network reads the gated block's *input*: global average pool -> 1x1 ``gate.conv_reduce``
(bias) -> ReLU -> 1x1 ``gate.gate.0`` (one logit per route), DS-Net's slimming head without the attention head
(a ResNet block has no squeeze-excite to share).  So the gate engine hands the routes the previous stage's output
unchanged and a route runs the gated block whole, shortcut included.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...arch.blocks import BlockSite, conv_output_size, identity_shortcut_problem, iter_blocks, needs_projection
from ...arch.cost import BlockCost, Cost
from ...arch.families import BlockFamily, register_family

#: ResNet's bottleneck expansion: output width = 4 x inner width.
EXPANSION = 4


@dataclass(frozen=True)
class ConvStep:
    """One convolution + BatchNorm of a block's body (``conv{n}``/``bn{n}``), with its width choices."""

    n: int
    kernel: int
    stride: int
    out_channels: tuple[int, ...]


def inner_channels(site: BlockSite) -> tuple[int, ...]:
    """The body's inner width choices: the output's for ``basic``, a quarter of it for ``bottleneck``."""
    if site.stage.block == "bottleneck":
        return tuple(c // EXPANSION for c in site.out_channels)
    return site.out_channels


def body(site: BlockSite) -> tuple[ConvStep, ...]:
    """The body's convolutions in order; every step but the last is followed by the activation."""
    inner, k = inner_channels(site), site.stage.kernel
    if site.stage.block == "bottleneck":
        return (ConvStep(1, 1, 1, inner), ConvStep(2, k, site.stride, inner), ConvStep(3, 1, 1, site.out_channels))
    return ConvStep(1, k, site.stride, inner), ConvStep(2, k, 1, site.out_channels)


def step_width(step: ConvStep, site: BlockSite, cout: int) -> int:
    """The step's output width on the route whose block output width is ``cout``."""
    return step.out_channels[site.out_channels.index(cout)]


def gate_width(site: BlockSite) -> int:
    """The gate's hidden width: ``se_ratio`` of the widest block input (64 for ResNet-50's stage 2)."""
    return site.spec.se_channels(site.in_channels, site.stage.se_ratio)


def cost(site: BlockSite, cin: int, cout: int, hw: tuple[int, int]) -> BlockCost:
    """The body's convolutions, then the projection shortcut if any; BatchNorm and the add cost no MAdds."""
    total, size, width = Cost(0, 0), hw, cin
    for step in body(site):
        out = step_width(step, site, cout)
        size = tuple(conv_output_size(n, step.kernel, step.stride) for n in size)
        total = total + Cost(macs=width * out * step.kernel ** 2 * size[0] * size[1],
                             params=width * out * step.kernel ** 2 + 2 * out, buffers=2 * out)
        width = out
    if needs_projection(site):
        total = total + Cost(macs=cin * cout * size[0] * size[1], params=cin * cout + 2 * cout, buffers=2 * cout)
    return BlockCost(Cost(0, 0), total, hw, size)


def gate_macs(site: BlockSite, cin: int, hw: tuple[int, int]) -> int:
    """The gate's pool (its input's elements) and reduce layer, besides its head."""
    return cin * hw[0] * hw[1] + cin * gate_width(site)


def check_stage(spec, stage_index: int) -> str | None:
    stage = spec.stages[stage_index]
    if stage.block == "bottleneck" and any(c % EXPANSION for c in stage.channels):
        return (f"a bottleneck stage's widths must be multiples of {EXPANSION} (its inner width is a quarter), "
                f"got {list(stage.channels)}")
    if stage.residual:
        return f"'residual' is the ds family's option; {stage.block} blocks always have their shortcut"
    first = next(s for s in iter_blocks(spec) if s.stage_index == stage_index)
    return None if needs_projection(first) else identity_shortcut_problem(spec, stage_index)


def _family(name: str) -> BlockFamily:
    return register_family(BlockFamily(
        name=name,
        cost=cost,
        gate_width=gate_width,
        check_stage=check_stage,
        gate_macs=gate_macs,
        parts={
            "torch": f"{__name__}.modules:ResidualBlock",
            "masked_torch": f"{__name__}.modules:masked_forward",
            "onnx": f"{__name__}.graph",
            "masked_onnx": f"{__name__}.graph:masked",
        },
    ))


BASIC, BOTTLENECK = _family("basic"), _family("bottleneck")
