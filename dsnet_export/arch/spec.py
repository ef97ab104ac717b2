"""Architecture specs: a slimmable supernet described as frozen data.

The spec is pure Python (no torch) because three worlds read it: the torch model builds
modules from it, the exporter emits ONNX from it, and the runtime reads it back out of a
bundle manifest.  ``StageSpec.block`` names a block family (``arch.families``), the one object
that owns that block type in every world, so a new family (e.g. residual bottlenecks for
DS-ResNet) is a new registered family, not a fork of the machinery.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import SpecError
from ..records import parse_record
from .families import family_names

ACTIVATIONS = ("swish",)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor`` the way the official DS-Net code does.

    Used for the squeeze-excite width: round-half-up, never below ``min_value`` and never
    more than 10% below ``value``.
    """
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


@dataclass(frozen=True)
class StemSpec:
    """The first convolution (+BN+activation); its width choices only matter for ``largest``."""

    channels: tuple[int, ...]
    kernel: int = 3
    stride: int = 2


@dataclass(frozen=True)
class StageSpec:
    """A run of ``layers`` blocks sharing one list of output-width choices.

    Only the first block changes resolution (``stride``) and width; the others map the
    stage width to itself.
    """

    channels: tuple[int, ...]
    layers: int
    kernel: int = 3
    stride: int = 1
    block: str = "ds"
    se_ratio: float = 0.25


@dataclass(frozen=True)
class GateSpec:
    """Where the gate sits and which widths it chooses between.

    The gate lives in the first block of ``stage``.  Route ``g`` of the gate runs every stage
    from ``stage`` on at choice index ``routes[g]``; stages before it stay at choice 0.
    """

    stage: int
    routes: tuple[int, ...]


@dataclass(frozen=True)
class InputSpec:
    """What the network expects: NCHW float32, normalised with ``mean``/``std``."""

    channels: int = 3
    height: int = 224
    width: int = 224
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    #: Short side the image is resized to before the centre crop (None: resize straight to size).
    resize: int | None = None
    interpolation: str = "bilinear"


@dataclass(frozen=True)
class ArchSpec:
    """A whole slimmable network: stem, stages, gate, classifier."""

    name: str
    stem: StemSpec
    stages: tuple[StageSpec, ...]
    gate: GateSpec
    num_classes: int
    input: InputSpec = field(default_factory=InputSpec)
    activation: str = "swish"
    bn_eps: float = 1e-5
    #: The architecture name the official DS-Net code writes into its checkpoints' ``arch``.
    official_name: str | None = None

    def __post_init__(self) -> None:
        validate(self)

    # -- derived facts -------------------------------------------------------------------
    @property
    def num_uniform_choices(self) -> int:
        """How many ``uniform:k`` widths exist (the gated stage and later share one count)."""
        return len(self.stages[self.gate.stage].channels)

    @property
    def num_routes(self) -> int:
        return len(self.gate.routes)

    def stage_input_channels(self, index: int) -> tuple[int, ...]:
        """Width choices entering stage ``index`` (the previous stage's, or the stem's)."""
        return self.stem.channels if index == 0 else self.stages[index - 1].channels

    def se_channels(self, in_channels: tuple[int, ...], se_ratio: float) -> int:
        """Squeeze-excite hidden width: fixed per block, from its widest input."""
        return make_divisible(max(in_channels) * se_ratio, divisor=1)

    # -- (de)serialisation for manifests and checkpoints ---------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "arch spec", path: str = "") -> ArchSpec:
        """Rebuild a spec from ``to_dict`` output, rejecting missing or unknown fields and wrong types
        (errors read ``<where>: <path>.<field>: <problem>``)."""
        try:
            return parse_record(cls, data, where, path, error=SpecError)
        except SpecError:
            raise
        except (TypeError, ValueError) as exc:
            raise SpecError(f"{where}: {exc}") from None


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SpecError(message)


def _check_channels(channels: Any, where: str) -> None:
    _check(isinstance(channels, tuple) and len(channels) > 0, f"{where}: channels must be a non-empty list")
    _check(all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels),
           f"{where}: channels must be positive integers, got {list(channels)}")
    _check(all(a < b for a, b in zip(channels, channels[1:])),
           f"{where}: channels must be strictly increasing, got {list(channels)}")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate(spec: ArchSpec) -> None:
    """Raise ``SpecError`` naming the first field that makes ``spec`` unusable."""
    name = spec.name or "<unnamed>"
    _check(isinstance(spec.name, str) and spec.name != "", "arch spec: name must be a non-empty string")
    _check_channels(spec.stem.channels, f"{name}.stem")
    _check(_positive_int(spec.stem.kernel) and spec.stem.kernel % 2 == 1, f"{name}.stem: kernel must be odd")
    _check(_positive_int(spec.stem.stride), f"{name}.stem: stride must be a positive integer")
    _check(len(spec.stages) > 0, f"{name}: needs at least one stage")
    for i, stage in enumerate(spec.stages):
        where = f"{name}.stages[{i}]"
        _check_channels(stage.channels, where)
        _check(_positive_int(stage.layers), f"{where}: layers must be a positive integer")
        _check(_positive_int(stage.kernel) and stage.kernel % 2 == 1, f"{where}: kernel must be odd")
        _check(_positive_int(stage.stride), f"{where}: stride must be a positive integer")
        _check(stage.block in family_names(),
               f"{where}: unknown block type {stage.block!r} (known: {', '.join(family_names())})")
        _check(isinstance(stage.se_ratio, (int, float)) and 0 < stage.se_ratio <= 1,
               f"{where}: se_ratio must be in (0, 1]")
    gate = spec.gate
    _check(isinstance(gate.stage, int) and 0 <= gate.stage < len(spec.stages),
           f"{name}.gate: stage must index one of the {len(spec.stages)} stages")
    n_uniform = len(spec.stages[gate.stage].channels)
    for i in range(gate.stage, len(spec.stages)):
        _check(len(spec.stages[i].channels) == n_uniform,
               f"{name}.stages[{i}]: every stage from the gated one on needs {n_uniform} width choices "
               f"(uniform:k sets them all to choice k)")
    _check(len(gate.routes) >= 2, f"{name}.gate: needs at least two routes")
    _check(all(isinstance(r, int) and 0 <= r < n_uniform for r in gate.routes),
           f"{name}.gate: routes must be choice indexes in 0..{n_uniform - 1}")
    _check(list(gate.routes) == sorted(set(gate.routes)), f"{name}.gate: routes must be strictly increasing")
    _check(_positive_int(spec.num_classes), f"{name}: num_classes must be a positive integer")
    inp = spec.input
    _check(_positive_int(inp.channels) and _positive_int(inp.height) and _positive_int(inp.width),
           f"{name}.input: channels, height and width must be positive integers")
    _check(len(inp.mean) == inp.channels and len(inp.std) == inp.channels,
           f"{name}.input: mean and std need one value per channel")
    _check(all(s > 0 for s in inp.std), f"{name}.input: std values must be positive")
    _check(spec.activation in ACTIVATIONS, f"{name}: unknown activation {spec.activation!r}")
    _check(isinstance(spec.bn_eps, float) and spec.bn_eps > 0 and math.isfinite(spec.bn_eps),
           f"{name}: bn_eps must be a positive float")
