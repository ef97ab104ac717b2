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
from .families import block_family, family_names

ACTIVATIONS = ("swish", "relu")

#: Sane limits on a spec read from a file (a checkpoint's metadata, a bundle manifest): far beyond any real
#: DS-Net (ds_mbnet: 5 stages, 13 blocks, 14 widths, 1152 channels, 224 px, ~8M parameters), yet small enough
#: that a hostile spec cannot make the loader allocate gigabytes or build millions of modules.
LIMITS = {
    "name_length": 256,
    "channels": 16384,          # any width (stem, stage)
    "width_choices": 64,        # entries in one channels list
    "stages": 32,
    "layers": 64,               # blocks in one stage
    "blocks": 256,              # blocks in all stages
    "block_widths": 4096,       # sum over stages of layers x width choices (one BatchNorm set each)
    "kernel": 15,
    "stride": 8,
    "num_classes": 100_000,
    "input_channels": 64,
    "input_size": (8, 4096),    # height and width, pixels
    "resize": 16384,
    "params": 2_000_000_000,    # parameters of the largest route (arch.cost)
}


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
    #: A 3x3, stride-2 max pool (padding 1) after the stem's activation, as in ResNet.
    pool: bool = False


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
    #: Squeeze-excite width (``ds``) or the gate's hidden width (residual families), as a share of the widest input.
    se_ratio: float = 0.25
    #: ``ds`` only: the official blocks' shortcut (their ``noskip=False``), see ``families.ds``.
    residual: bool = False


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
    _check(len(channels) <= LIMITS["width_choices"],
           f"{where}: channels has {len(channels)} width choices; at most {LIMITS['width_choices']}")
    _check(all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels),
           f"{where}: channels must be positive integers, got {_short(channels)}")
    _check(max(channels) <= LIMITS["channels"],
           f"{where}: channels must be at most {LIMITS['channels']}, got {_short(max(channels))}")
    _check(all(a < b for a, b in zip(channels, channels[1:])),
           f"{where}: channels must be strictly increasing, got {_short(channels)}")


def _short(value: Any, limit: int = 80) -> str:
    """``value`` for an error message, cut to ``limit`` characters (a hostile file's numbers can be huge)."""
    text = repr(list(value)) if isinstance(value, tuple) else _int_repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _int_repr(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    return repr(value)


def _positive_int(value: Any, most: int | None = None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0 and (most is None or value <= most)


def _finite(values: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def validate(spec: ArchSpec) -> None:
    """Raise ``SpecError`` naming the first field that makes ``spec`` unusable or beyond ``LIMITS``."""
    _check(isinstance(spec.name, str) and spec.name != "", "arch spec: name must be a non-empty string")
    _check(len(spec.name) <= LIMITS["name_length"],
           f"arch spec: name must be at most {LIMITS['name_length']} characters, got {len(spec.name)}")
    name = spec.name
    _check(spec.official_name is None or len(spec.official_name) <= LIMITS["name_length"],
           f"{name}: official_name must be at most {LIMITS['name_length']} characters")
    _check_channels(spec.stem.channels, f"{name}.stem")
    _check_kernel_stride(spec.stem, f"{name}.stem")
    _check(isinstance(spec.stem.pool, bool), f"{name}.stem: pool must be true or false")
    _check(len(spec.stages) > 0, f"{name}: needs at least one stage")
    _check(len(spec.stages) <= LIMITS["stages"],
           f"{name}.stages: {len(spec.stages)} stages; at most {LIMITS['stages']}")
    for i, stage in enumerate(spec.stages):
        where = f"{name}.stages[{i}]"
        _check_channels(stage.channels, where)
        _check(_positive_int(stage.layers), f"{where}: layers must be a positive integer")
        _check(stage.layers <= LIMITS["layers"],
               f"{where}: layers must be at most {LIMITS['layers']}, got {_short(stage.layers)}")
        _check_kernel_stride(stage, where)
        _check(isinstance(stage.block, str) and stage.block in family_names(),
               f"{where}: unknown block type {stage.block!r:.60} (known: {', '.join(family_names())})")
        _check(isinstance(stage.se_ratio, (int, float)) and 0 < stage.se_ratio <= 1,
               f"{where}: se_ratio must be in (0, 1]")
        _check(isinstance(stage.residual, bool), f"{where}: residual must be true or false")
    blocks = sum(stage.layers for stage in spec.stages)
    _check(blocks <= LIMITS["blocks"], f"{name}.stages: {blocks} layers in all; at most {LIMITS['blocks']}")
    widths = sum(stage.layers * len(stage.channels) for stage in spec.stages)
    _check(widths <= LIMITS["block_widths"],
           f"{name}.stages: layers x channel choices sum to {widths}; at most {LIMITS['block_widths']}")
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
    for i, stage in enumerate(spec.stages):  # the family's own rules, once the whole layout is known to be sane
        problem = block_family(stage.block).check_stage(spec, i)
        _check(problem is None, f"{name}.stages[{i}]: {problem}")
    _check(spec.num_classes <= LIMITS["num_classes"],
           f"{name}: num_classes must be at most {LIMITS['num_classes']}, got {_short(spec.num_classes)}")
    inp = spec.input
    _check(_positive_int(inp.channels) and _positive_int(inp.height) and _positive_int(inp.width),
           f"{name}.input: channels, height and width must be positive integers")
    _check(inp.channels <= LIMITS["input_channels"],
           f"{name}.input: channels must be at most {LIMITS['input_channels']}, got {_short(inp.channels)}")
    low, high = LIMITS["input_size"]
    for field_name in ("height", "width"):
        value = getattr(inp, field_name)
        _check(low <= value <= high, f"{name}.input: {field_name} must be in {low}..{high}, got {_short(value)}")
    _check(inp.resize is None or _positive_int(inp.resize, LIMITS["resize"]),
           f"{name}.input: resize must be null or an integer in 1..{LIMITS['resize']}, got {_short(inp.resize)}")
    _check(len(inp.mean) == inp.channels and len(inp.std) == inp.channels,
           f"{name}.input: mean and std need one value per channel")
    _check(_finite(inp.mean), f"{name}.input: mean values must be finite numbers")
    _check(_finite(inp.std) and all(s > 0 for s in inp.std), f"{name}.input: std values must be positive")
    _check(spec.activation in ACTIVATIONS, f"{name}: unknown activation {spec.activation!r:.60}")
    _check(isinstance(spec.bn_eps, float) and spec.bn_eps > 0 and math.isfinite(spec.bn_eps),
           f"{name}: bn_eps must be a positive float")
    check_size(spec)


def _check_kernel_stride(part: Any, where: str) -> None:
    _check(_positive_int(part.kernel) and part.kernel % 2 == 1,
           f"{where}: kernel must be odd, got {_short(part.kernel)}")
    _check(part.kernel <= LIMITS["kernel"], f"{where}: kernel must be at most {LIMITS['kernel']}, "
           f"got {_short(part.kernel)}")
    _check(_positive_int(part.stride, LIMITS["stride"]),
           f"{where}: stride must be an integer in 1..{LIMITS['stride']}, got {_short(part.stride)}")


def check_size(spec: ArchSpec) -> None:
    """Raise ``SpecError`` if the widest network could hold more than ``LIMITS['params']`` parameters (the fields'
    own limits still allow ~10^12).  An upper bound counted here, not the family's exact cost (``arch.cost``
    imports this module): every block as a dense kxk convolution plus a 1x1 one from its widest input to its
    widest output, with BatchNorms and a squeeze-excite as wide as its input, which no block family exceeds."""
    cin = max(spec.input.channels, 1)
    stem = max(spec.stem.channels)
    params = spec.stem.kernel ** 2 * cin * stem + 4 * stem
    cin = stem
    for stage in spec.stages:
        cout = max(stage.channels)
        for _ in range(stage.layers):
            params += (stage.kernel ** 2 + 1) * cin * cout + 4 * (cin + cout) + 2 * cin * cin + 2 * cin
            cin = cout
    params += cin * spec.num_classes + spec.num_classes
    _check(params <= LIMITS["params"],
           f"{spec.name}: the largest route could hold up to {params:,} parameters; at most {LIMITS['params']:,} "
           f"(check stem/stages channels, layers and num_classes)")
