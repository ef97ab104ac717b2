"""``@register_arch``: architectures are registry entries, looked up by name."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import SpecError
from .spec import ArchSpec

_REGISTRY: dict[str, Callable[[], ArchSpec]] = {}


def register_arch(factory: Callable[[], ArchSpec]) -> Callable[[], ArchSpec]:
    """Register a zero-argument factory under the name of the spec it returns."""
    name = factory().name
    if name in _REGISTRY:
        raise SpecError(f"architecture {name!r} is registered twice")
    _REGISTRY[name] = factory
    return factory


def get_arch(name: str) -> ArchSpec:
    """The registered spec called ``name`` (or whose official checkpoint name is ``name``)."""
    if name in _REGISTRY:
        return _REGISTRY[name]()
    for factory in _REGISTRY.values():
        spec = factory()
        if spec.official_name == name:
            return spec
    raise SpecError(f"unknown architecture {name!r}; registered: {', '.join(list_archs())}")


def list_archs() -> list[str]:
    return sorted(_REGISTRY)
