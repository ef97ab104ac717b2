"""MAdds and parameter counts per route, counted the way the official DS-Net code counts.

Rule (official ``add_flops``/``module_mac``, batch 1): a convolution costs
``Cin*Cout*k*k*Hout*Wout/groups``, a linear layer ``in*out``, an average pool ``C*H*W`` of its
input.  The pools (squeeze-excite squeeze, global pool) are counted; biases and BatchNorm are
not.  The gate head is not part of a route's cost (the official uniform subnets never run
it); ``gate_head_macs`` reports it separately.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .routes import Route, RouteLike, resolve_route
from .spec import ArchSpec, StageSpec


@dataclass(frozen=True)
class Cost:
    macs: int
    params: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.params + other.params)


def conv_output_size(size: int, kernel: int, stride: int) -> int:
    """Output size of the official DSConv2d, whose padding is ((stride-1) + (kernel-1)) // 2."""
    padding = ((stride - 1) + (kernel - 1)) // 2
    return (size + 2 * padding - kernel) // stride + 1


BlockCostFn = Callable[..., tuple[Cost, Cost, int, int]]
_BLOCK_COSTS: dict[str, BlockCostFn] = {}


def register_block_cost(block_type: str) -> Callable[[BlockCostFn], BlockCostFn]:
    """Register ``fn(spec, stage, in_list, cin, cout, stride, h, w) -> (pre_gate, post_gate, h_out, w_out)``.

    ``pre_gate`` is the part a gate would run before the width is known (for a gated block).
    """
    def wrap(fn: BlockCostFn) -> BlockCostFn:
        _BLOCK_COSTS[block_type] = fn
        return fn
    return wrap


@register_block_cost("ds")
def _ds_block_cost(spec: ArchSpec, stage: StageSpec, in_list: tuple[int, ...], cin: int, cout: int,
                   stride: int, h: int, w: int) -> tuple[Cost, Cost, int, int]:
    """Depthwise kxk -> BN -> act -> squeeze-excite | pointwise 1x1 -> BN -> act."""
    ho, wo = conv_output_size(h, stage.kernel, stride), conv_output_size(w, stage.kernel, stride)
    se = spec.se_channels(in_list, stage.se_ratio)
    k2 = stage.kernel * stage.kernel
    pre = Cost(macs=cin * k2 * ho * wo      # depthwise
               + cin * ho * wo              # SE squeeze (average pool)
               + cin * se + se * cin,       # SE reduce + expand (1x1 on a 1x1 map)
               params=cin * k2 + 2 * cin    # depthwise + BN affine
               + cin * se + se              # SE reduce (+bias)
               + se * cin + cin)            # SE expand (+bias)
    post = Cost(macs=cin * cout * ho * wo, params=cin * cout + 2 * cout)  # pointwise + BN affine
    return pre, post, ho, wo


def _block_costs(spec: ArchSpec, route: Route, input_hw: tuple[int, int] | None):
    """Yield (stage index, layer, pre, post) for every block, after the stem's cost (stage -1)."""
    h, w = input_hw or (spec.input.height, spec.input.width)
    widths = route.widths(spec)
    h = conv_output_size(h, spec.stem.kernel, spec.stem.stride)
    w = conv_output_size(w, spec.stem.kernel, spec.stem.stride)
    k2 = spec.stem.kernel ** 2
    stem = Cost(spec.input.channels * widths[0] * k2 * h * w, spec.input.channels * widths[0] * k2 + 2 * widths[0])
    yield -1, 0, stem, Cost(0, 0)
    cin = widths[0]
    for i, stage in enumerate(spec.stages):
        cout = widths[1 + i]
        for layer in range(stage.layers):
            in_list = spec.stage_input_channels(i) if layer == 0 else stage.channels
            stride = stage.stride if layer == 0 else 1
            pre, post, h, w = _BLOCK_COSTS[stage.block](spec, stage, in_list, cin, cout, stride, h, w)
            yield i, layer, pre, post
            cin = cout
    yield len(spec.stages), 0, Cost(cin * h * w + cin * spec.num_classes, cin * spec.num_classes + spec.num_classes), \
        Cost(0, 0)


def route_cost(spec: ArchSpec, route: RouteLike, input_hw: tuple[int, int] | None = None) -> Cost:
    """MAdds and parameters of the dense subnet that ``route`` selects."""
    total = Cost(0, 0)
    for _, _, pre, post in _block_costs(spec, resolve_route(spec, route), input_hw):
        total = total + pre + post
    return total


def pre_gate_cost(spec: ArchSpec, input_hw: tuple[int, int] | None = None) -> Cost:
    """Cost of everything the gate engine runs before its head (shared by all gate routes)."""
    total = Cost(0, 0)
    for stage, _layer, pre, post in _block_costs(spec, resolve_route(spec, 0), input_hw):
        if stage == spec.gate.stage:
            return total + pre
        total = total + pre + post
    raise AssertionError("gate stage not reached")  # ArchSpec validation prevents this


def gate_head_macs(spec: ArchSpec) -> int:
    """MAdds of the gate's own head (its hidden layer is the squeeze-excite's, already counted)."""
    gated_in = spec.stage_input_channels(spec.gate.stage)
    return spec.num_routes * spec.se_channels(gated_in, spec.stages[spec.gate.stage].se_ratio)
