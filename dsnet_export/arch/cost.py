"""MAdds and parameter counts per route, counted the way the official DS-Net code counts.

Rule (official ``add_flops``/``module_mac``, batch 1): a convolution costs
``Cin*Cout*k*k*Hout*Wout/groups``, a linear layer ``in*out``, an average pool ``C*H*W`` of its
input.  The pools (squeeze-excite squeeze, global pool) are counted; biases and BatchNorm are
not.  The gate head is not part of a route's cost (the official uniform subnets never run
it); ``gate_head_macs`` reports it separately.
"""

from __future__ import annotations

from dataclasses import dataclass

from .blocks import conv_output_size, gated_site, iter_blocks
from .families import block_family
from .routes import Route, RouteLike, resolve_route
from .spec import ArchSpec


@dataclass(frozen=True)
class Cost:
    """MAdds and parameters; ``buffers`` counts the other stored floats (BatchNorm running statistics)."""

    macs: int
    params: int
    buffers: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.params + other.params, self.buffers + other.buffers)


@dataclass(frozen=True)
class BlockCost:
    """One block at one width: ``pre`` is what a gated block runs before the width is known
    (the gate engine's part), ``post`` the rest; ``pre_size``/``size`` the spatial sizes after each."""

    pre: Cost
    post: Cost
    pre_size: tuple[int, int]
    size: tuple[int, int]


_ZERO = Cost(0, 0)


def _walk(spec: ArchSpec, route: Route, input_hw: tuple[int, int] | None):
    """Yield (site or None, BlockCost): the stem (site None), every block, then the head (site None)."""
    h, w = input_hw or (spec.input.height, spec.input.width)
    widths = route.widths(spec)
    size = (conv_output_size(h, spec.stem.kernel, spec.stem.stride),
            conv_output_size(w, spec.stem.kernel, spec.stem.stride))
    k2, c = spec.stem.kernel ** 2, widths[0]
    stem = Cost(spec.input.channels * c * k2 * size[0] * size[1], spec.input.channels * c * k2 + 2 * c, 2 * c)
    if spec.stem.pool:  # max pooling costs no MAdds; it only shrinks the map
        size = stem_pool_size(size)
    yield None, BlockCost(stem, _ZERO, size, size)
    cin = widths[0]
    for site in iter_blocks(spec):
        cout = widths[1 + site.stage_index]
        block = block_family(site.stage.block).cost(site, cin, cout, size)
        yield site, block
        cin, size = cout, block.size
    head = Cost(cin * size[0] * size[1] + cin * spec.num_classes, cin * spec.num_classes + spec.num_classes)
    yield None, BlockCost(head, _ZERO, (1, 1), (1, 1))


def stem_pool_size(size: tuple[int, int]) -> tuple[int, int]:
    """Spatial size after the stem's 3x3, stride-2, padding-1 max pool (``StemSpec.pool``)."""
    return conv_output_size(size[0], 3, 2), conv_output_size(size[1], 3, 2)


def route_cost(spec: ArchSpec, route: RouteLike, input_hw: tuple[int, int] | None = None) -> Cost:
    """MAdds and parameters (and buffers) of the dense subnet that ``route`` selects."""
    total = _ZERO
    for _, block in _walk(spec, resolve_route(spec, route), input_hw):
        total = total + block.pre + block.post
    return total


def _until_gate(spec: ArchSpec, input_hw: tuple[int, int] | None) -> tuple[Cost, tuple[int, int]]:
    total = _ZERO
    for site, block in _walk(spec, resolve_route(spec, 0), input_hw):
        if site is not None and site.gated:
            return total + block.pre, block.pre_size
        total = total + block.pre + block.post
    raise AssertionError("gate stage not reached")  # ArchSpec validation prevents this


def pre_gate_cost(spec: ArchSpec, input_hw: tuple[int, int] | None = None) -> Cost:
    """Cost of everything the gate engine runs before its head (shared by all gate routes)."""
    return _until_gate(spec, input_hw)[0]


def gate_feature_size(spec: ArchSpec, input_hw: tuple[int, int] | None = None) -> tuple[int, int]:
    """Spatial size [H, W] of the features the gate engine hands to the routes."""
    return _until_gate(spec, input_hw)[1]


def gate_head_macs(spec: ArchSpec, input_hw: tuple[int, int] | None = None) -> int:
    """MAdds of the gate's own work beyond the shared features: its head (one logit per route from the vector
    the gated block gives it) and, for families whose gate has its own layers, those."""
    site = gated_site(spec)
    family = block_family(site.stage.block)
    cin = resolve_route(spec, 0).widths(spec)[spec.gate.stage]
    return spec.num_routes * family.gate_width(site) + family.gate_macs(site, cin, gate_feature_size(spec, input_hw))
