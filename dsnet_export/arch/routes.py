"""Routes: which width every stage runs at.

A route is resolved once, from an index or a name, into a tuple of choice indexes (stem
first, then one per stage).  Everything downstream (model, cost, export, runtime) takes
that tuple, so no module ever stores "the current width".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

from ..errors import RouteError
from .spec import ArchSpec

RouteLike = Union[int, str, "Route"]


class EnginePart(str, enum.Enum):
    """Which part of the network an engine holds."""

    GATE = "gate"    # image -> (features, gate_logits): everything before the gate, at the gate's widths
    ROUTE = "route"  # features -> logits: everything after the gate, at one route's widths
    FULL = "full"    # image -> logits: one whole subnet


class RouteKind(str, enum.Enum):
    """How a bundle's route runs (the manifest's ``routes[i].kind``)."""

    GATE = "gate"      # the gate can choose it; runs on the gate engine's features
    FORCED = "forced"  # runs on the gate's features, only when a caller names it
    FIXED = "fixed"    # other widths before the gate too: a whole network of its own, no gate

    @property
    def engine_part(self) -> EnginePart:
        return EnginePart.FULL if self is RouteKind.FIXED else EnginePart.ROUTE


@dataclass(frozen=True)
class Route:
    """A concrete width assignment.

    ``choices[0]`` indexes ``spec.stem.channels``; ``choices[1 + i]`` indexes
    ``spec.stages[i].channels``.  ``gate_index`` is the gate output that selects this route,
    or None when the gate never picks it (forced-only or fixed-width routes).
    """

    name: str
    choices: tuple[int, ...]
    gate_index: int | None = None

    def stem_channels(self, spec: ArchSpec) -> int:
        return spec.stem.channels[self.choices[0]]

    def stage_channels(self, spec: ArchSpec) -> tuple[int, ...]:
        return tuple(stage.channels[c] for stage, c in zip(spec.stages, self.choices[1:]))

    def widths(self, spec: ArchSpec) -> tuple[int, ...]:
        """Channel count of the stem and of every stage, in order."""
        return (self.stem_channels(spec), *self.stage_channels(spec))

    def kind(self, spec: ArchSpec) -> RouteKind:
        if self.gate_index is not None:
            return RouteKind.GATE
        return RouteKind.FORCED if self.shares_gate(spec) else RouteKind.FIXED

    def shares_gate(self, spec: ArchSpec) -> bool:
        """True when everything before the gate runs at the gate's own (smallest) widths,
        so this route can consume the gate engine's features."""
        return all(c == 0 for c in self.choices[: 1 + spec.gate.stage])


def uniform_route(spec: ArchSpec, k: int, name: str | None = None) -> Route:
    """Stages from the gated one on at choice ``k``, everything before at choice 0."""
    if not 0 <= k < spec.num_uniform_choices:
        raise RouteError(f"{spec.name}: uniform:{k} is out of range (0..{spec.num_uniform_choices - 1})")
    g = spec.gate.stage
    choices = (0,) + tuple(k if i >= g else 0 for i in range(len(spec.stages)))
    gate_index = spec.gate.routes.index(k) if k in spec.gate.routes else None
    return Route(name or f"uniform:{k}", choices, gate_index)


def gate_routes(spec: ArchSpec) -> tuple[Route, ...]:
    """The routes the gate chooses between, in gate-output order."""
    return tuple(uniform_route(spec, k) for k in spec.gate.routes)


def largest_route(spec: ArchSpec) -> Route:
    choices = (len(spec.stem.channels) - 1,) + tuple(len(s.channels) - 1 for s in spec.stages)
    return Route("largest", choices, None)


def resolve_route(spec: ArchSpec, route: RouteLike) -> Route:
    """Turn a gate index, ``"largest"``, ``"smallest"``, ``"uniform:k"`` or a Route into a Route."""
    if isinstance(route, Route):
        if len(route.choices) != 1 + len(spec.stages):
            raise RouteError(f"route {route.name!r} has {len(route.choices)} choices, {spec.name} needs "
                             f"{1 + len(spec.stages)}")
        return route
    if isinstance(route, bool):
        raise RouteError(f"route must be an int or a name, got {route!r}")
    if isinstance(route, int):
        if not 0 <= route < spec.num_routes:
            raise RouteError(f"{spec.name}: gate route {route} is out of range (0..{spec.num_routes - 1})")
        return uniform_route(spec, spec.gate.routes[route])
    if isinstance(route, str):
        text = route.strip()
        if text.isdigit():
            return resolve_route(spec, int(text))
        if text == "largest":
            return largest_route(spec)
        if text == "smallest":
            return uniform_route(spec, 0, name="smallest")
        if text.startswith("uniform:") and text[len("uniform:"):].isdigit():
            return uniform_route(spec, int(text[len("uniform:"):]))
        raise RouteError(f"unknown route {route!r}: use a gate index 0..{spec.num_routes - 1}, "
                         f"'largest', 'smallest' or 'uniform:k' (k in 0..{spec.num_uniform_choices - 1})")
    raise RouteError(f"route must be an int, a name or a Route, got {type(route).__name__}")
