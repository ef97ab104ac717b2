"""``ds``: DS-MBNet's depthwise-separable block.

dw kxk -> BN -> act -> squeeze-excite | pw 1x1 -> BN -> act (the spec's activation, swish in DS-MBNet), no
residual.  The gate reads the squeeze-excite's hidden vector, so a gated block's first half (up to the SE
multiplication) runs in the gate engine and only the pointwise half at the route's width.
"""

from __future__ import annotations

from ...arch.blocks import BlockSite, conv_output_size
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
    return BlockCost(pre, post, size, size)


FAMILY = register_family(BlockFamily(
    name="ds",
    cost=cost,
    gate_width=se_width,
    parts={
        "torch": f"{__name__}.modules:DepthwiseSeparableBlock",
        "masked_torch": f"{__name__}.modules:masked_forward",
        "onnx": f"{__name__}.graph",
        "masked_onnx": f"{__name__}.graph:masked",
    },
))
