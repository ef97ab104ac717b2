"""Architecture as data: specs, routes, cost model and the registry (pure Python, no torch)."""

from . import presets as _presets  # noqa: F401  (registers the built-in architectures)
from .blocks import BlockSite, conv_output_size, conv_padding, gated_site, iter_blocks
from .cost import BlockCost, Cost, gate_feature_size, gate_head_macs, pre_gate_cost, route_cost
from .families import BlockFamily, block_family, family_names, register_family
from .registry import get_arch, list_archs, register_arch
from .routes import EnginePart, Route, RouteKind, RouteLike, gate_routes, largest_route, resolve_route, uniform_route
from .spec import ArchSpec, GateSpec, InputSpec, StageSpec, StemSpec

__all__ = [
    "ArchSpec", "BlockCost", "BlockFamily", "BlockSite", "Cost", "EnginePart", "GateSpec", "InputSpec", "Route",
    "RouteKind", "RouteLike",
    "StageSpec", "StemSpec", "block_family", "conv_output_size", "conv_padding", "family_names", "gate_feature_size",
    "gate_head_macs", "gate_routes", "gated_site", "get_arch", "iter_blocks", "largest_route", "list_archs",
    "pre_gate_cost", "register_arch", "register_family", "resolve_route", "route_cost", "uniform_route",
]
