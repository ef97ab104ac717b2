"""Architecture as data: specs, routes, cost model and the registry (pure Python, no torch)."""

from . import presets as _presets  # noqa: F401  (registers the built-in architectures)
from .cost import Cost, gate_head_macs, pre_gate_cost, route_cost
from .registry import get_arch, list_archs, register_arch
from .routes import Route, RouteLike, gate_routes, largest_route, resolve_route, uniform_route
from .spec import ArchSpec, GateSpec, InputSpec, StageSpec, StemSpec

__all__ = [
    "ArchSpec", "Cost", "GateSpec", "InputSpec", "Route", "RouteLike", "StageSpec", "StemSpec",
    "gate_head_macs", "gate_routes", "pre_gate_cost", "get_arch", "largest_route", "list_archs", "register_arch",
    "resolve_route", "route_cost", "uniform_route",
]
