"""Block families: one registered object per ``StageSpec.block`` type, owning it in every world.

A family holds its cost (pure Python, called here) and names the parts that live in other
layers: its torch module, its ONNX emitter and its two masked forms ("module:attribute", imported
on first use).  Naming instead of importing keeps this layer torch-free and lets the torch model
and the ONNX generation layer, which sit above it, find a family's part without importing each
other.  The built-in families live in ``dsnet_export.families``; ``register_family`` adds one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..errors import SpecError

#: The worlds a family takes part in, and what each part must offer (checked by ``missing_parts``).
WORLDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "torch": ("pre_gate", "post_gate", "forward", "gate_logits", "gate_parameters", "to_dense"),  # nn.Module class
    "onnx": ("block", "pre_gate", "post_gate", "gate_head"),                   # an emitter module
    "masked_onnx": ("__call__",),   # full-width ONNX with per-sample channel masks (the bench)
    "masked_torch": ("__call__",),  # the same in torch (the bench's PyTorch baseline)
})

#: Families shipped with the package, imported (and so registered) on first use.
_BUILTIN = {"ds": "dsnet_export.families.ds",
            "basic": "dsnet_export.families.resnet", "bottleneck": "dsnet_export.families.resnet"}


def _no_rules(spec: Any, stage_index: int) -> str | None:
    return None


def _nothing_more(site: Any, cin: int, hw: tuple[int, int]) -> int:
    return 0


@dataclass(frozen=True)
class BlockFamily:
    """Everything about one block type.

    ``cost(site, cin, cout, hw) -> BlockCost``: MAdds, parameters and buffers of the block at
    widths ``cin -> cout`` on an ``hw`` input, split where the gate splits it.
    ``gate_width(site)``: width of the vector the gate head reads, when this block holds the gate.
    ``parts``: world -> "module:attribute" (or "module") of the part in that world.
    ``check_stage(spec, i)``: what this family cannot do with stage ``i`` of ``spec`` (a message), or None.
    ``gate_macs(site, cin, hw)``: MAdds the gate runs besides the block's ``pre`` cost and its head (a residual
    block's gate pools and reduces the block input; DS-MBNet's reuses the squeeze-excite, so 0).
    """

    name: str
    cost: Callable[..., Any]        # (BlockSite, cin, cout, (h, w)) -> cost.BlockCost
    gate_width: Callable[..., int]  # (BlockSite) -> int
    parts: Mapping[str, str]
    check_stage: Callable[[Any, int], str | None] = _no_rules
    gate_macs: Callable[..., int] = _nothing_more

    def part(self, world: str) -> Any:
        """The family's part in ``world``, imported now."""
        if world not in self.parts:
            raise SpecError(f"block family {self.name!r} has no {world!r} part")
        module, _, attribute = self.parts[world].partition(":")
        loaded = importlib.import_module(module)
        return getattr(loaded, attribute) if attribute else loaded

    def missing_parts(self) -> list[str]:
        """``world.attribute`` for every part this family lacks (empty when complete)."""
        missing = []
        for world, needed in WORLDS.items():
            try:
                part = self.part(world)
            except (SpecError, ImportError, AttributeError):
                missing.append(world)
                continue
            missing += [f"{world}.{name}" for name in needed if not hasattr(part, name)]
        return missing


_FAMILIES: dict[str, BlockFamily] = {}


def register_family(family: BlockFamily) -> BlockFamily:
    """Make ``StageSpec(block=family.name)`` usable."""
    if family.name in _FAMILIES:
        raise SpecError(f"block family {family.name!r} is registered twice")
    _FAMILIES[family.name] = family
    return family


def family_names() -> tuple[str, ...]:
    return tuple(sorted(set(_BUILTIN) | set(_FAMILIES)))


def block_family(name: str) -> BlockFamily:
    """The registered family called ``name``."""
    if name not in _FAMILIES and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _FAMILIES:
        raise SpecError(f"unknown block type {name!r} (known: {', '.join(family_names())})")
    return _FAMILIES[name]
