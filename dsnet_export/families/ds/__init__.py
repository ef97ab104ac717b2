"""``ds``: DS-MBNet's depthwise-separable block.

dw kxk -> BN -> act -> squeeze-excite | pw 1x1 -> BN -> act (the spec's activation, swish in DS-MBNet).  The gate
reads the squeeze-excite's hidden vector, so a gated block's first half (up to the SE multiplication) runs in the
gate engine and only the pointwise half at the route's width.

``StageSpec.residual`` adds the official blocks' shortcut (their ``noskip=False``, unused by the released model):
when the stride is 2, a 2x2 average pool (ceil mode, padding not counted); when the widest input and output widths
differ, a sliced 1x1 convolution without bias or BatchNorm (``downsample.{0|1}``); otherwise the input itself.  It
is added after the block's last activation, and training starts with the last BatchNorm's scale at zero.  The
gated stage cannot have it: the gate engine hands a route only the squeeze-excite output, not the block input.
"""

from __future__ import annotations

from ...arch.blocks import BlockSite, conv_output_size, identity_shortcut_problem
from ...arch.cost import BlockCost, Cost
from ...arch.families import BlockFamily, register_family


def se_width(site: BlockSite) -> int:
    """Squeeze-excite hidden width: fixed per block, from its widest input (the gate reads it)."""
    return site.spec.se_channels(site.in_channels, site.stage.se_ratio)


def cost(site: BlockSite, cin: int, cout: int, hw: tuple[int, int]) -> BlockCost:
    """Official counting: depthwise, SE pool + reduce + expand before the gate; pointwise after."""
    k = site.stage.kernel
    size = (conv_output_size(hw[0], k, site.stride), conv_output_size(hw[1], k, site.stride))
    area, se = size[0] * size[1], se_width(site)
    pre = Cost(macs=cin * k * k * area     # depthwise
               + cin * area                # SE squeeze (average pool)
               + cin * se + se * cin,      # SE reduce + expand (1x1 on a 1x1 map)
               params=cin * k * k + 2 * cin  # depthwise + BN affine
               + cin * se + se              # SE reduce (+bias)
               + se * cin + cin,            # SE expand (+bias)
               buffers=2 * cin)             # BN running mean + var
    post = Cost(macs=cin * cout * area, params=cin * cout + 2 * cout, buffers=2 * cout)  # pointwise + BN
    if site.stage.residual:
        post = post + shortcut_cost(site, cin, cout, hw, size)
    return BlockCost(pre, post, size, size)


def shortcut_pools(site: BlockSite) -> bool:
    return site.stage.residual and site.stride == 2


def shortcut_convolves(site: BlockSite) -> bool:
    return site.stage.residual and max(site.in_channels) != max(site.out_channels)


def shortcut_conv_key(site: BlockSite) -> str:
    """``downsample.1`` after the pool, ``downsample.0`` without one (the official ``nn.Sequential``)."""
    return f"{site.prefix}.downsample.{1 if shortcut_pools(site) else 0}.weight"


def shortcut_cost(site: BlockSite, cin: int, cout: int, hw: tuple[int, int], size: tuple[int, int]) -> Cost:
    """The average pool (its input's elements, the official rule for pools) and the 1x1 projection."""
    macs = cin * hw[0] * hw[1] if shortcut_pools(site) else 0
    if shortcut_convolves(site):
        return Cost(macs=macs + cin * cout * size[0] * size[1], params=cin * cout)
    return Cost(macs=macs, params=0)


def check_stage(spec, stage_index: int) -> str | None:
    stage = spec.stages[stage_index]
    if not stage.residual:
        return None
    if stage.stride not in (1, 2):
        return "a residual ds stage needs stride 1 or 2 (the official shortcut pools 2x2)"
    if stage_index == spec.gate.stage:
        return ("the gated stage cannot be residual: the gate engine hands a route only the squeeze-excite "
                "output of the gated block, not the block input its shortcut would add")
    if max(spec.stage_input_channels(stage_index)) != max(stage.channels):
        return None  # projected by the 1x1 convolution
    return identity_shortcut_problem(spec, stage_index)


FAMILY = register_family(BlockFamily(
    name="ds",
    cost=cost,
    gate_width=se_width,
    check_stage=check_stage,
    parts={
        "torch": f"{__name__}.modules:DepthwiseSeparableBlock",
        "masked_torch": f"{__name__}.modules:masked_forward",
        "onnx": f"{__name__}.graph",
        "masked_onnx": f"{__name__}.graph:masked",
    },
))
