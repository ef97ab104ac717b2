"""Starting a residual supernet from torchvision ResNet weights.

Stage I (training the supernet at every width) need not start from random weights: a user of ``ds_resnet50`` or
``ds_resnet18`` usually has torchvision's ImageNet ResNet-50 / ResNet-18 weights already, and route 3 of those
presets has exactly their widths.  ``from_torchvision_resnet`` renames such a state dict into the supernet's
layout (``conv1`` -> ``conv_stem``, ``layer{i+1}.{j}`` -> ``blocks.{i}.first_block`` / ``residual_blocks.{j-1}``,
``fc`` -> ``classifier``, BatchNorm affine onto the shared last ``aux_bn``) and copies every tensor into the prefix
of its supernet tensor, so the largest route computes what the torchvision network computes.  Narrower widths
get the prefix of the full-width BatchNorm statistics, a starting point Stage I re-estimates; the gate has no
torchvision counterpart and keeps its initialisation.  No torchvision import is needed: only the key layout is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from ..arch import ArchSpec
from ..errors import CheckpointError
from .layers import SlicedConv2d, SlicedLinear, SlimBatchNorm2d
from .supernet import Supernet

_LIST_LIMIT = 8
_RESIDUAL_BLOCKS = ("basic", "bottleneck")
_BN_NAMES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_LAYER_KEY = re.compile(r"layer(\d+)\.(\d+)\.")


def looks_like_torchvision_resnet(keys: Iterable[str]) -> bool:
    """Whether a state dict's keys are torchvision's ResNet layout (``conv1``, ``layer1.0...``, ``fc``)."""
    return {"fc.weight", "conv1.weight", "layer1.0.conv1.weight"} <= set(keys)


@dataclass(frozen=True)
class _Target:
    """Where one torchvision tensor goes: a sliced weight, or one BatchNorm tensor of a per-width BatchNorm."""

    module: str                      # the supernet module's name
    name: str                        # the tensor's name in torchvision (weight, running_mean, ...)
    bn: tuple[int, ...] | None       # the BatchNorm's width choices, or None for a convolution / the classifier
    exact_dims: tuple[int, ...]      # dimensions that must match exactly (kernel size, classes)


def _torchvision_module(name: str) -> str:
    """A supernet module name in torchvision's naming (``blocks.1.residual_blocks.0.bn2`` -> ``layer2.1.bn2``)."""
    if name == "conv_stem":
        return "conv1"
    if name == "classifier":
        return "fc"
    found = re.fullmatch(r"blocks\.(\d+)\.(?:first_block|residual_blocks\.(\d+))(\..+)", name)
    if found is None:
        return name  # the stem's bn1
    block = 0 if found.group(2) is None else int(found.group(2)) + 1
    return f"layer{int(found.group(1)) + 1}.{block}{found.group(3)}"


def _targets(model: Supernet) -> dict[str, _Target]:
    """Every torchvision key the supernet has a place for, in the supernet's order; the gate has none."""
    targets: dict[str, _Target] = {}
    for name, module in model.named_modules():
        if ".gate." in f".{name}.":
            continue
        tv = _torchvision_module(name)
        if isinstance(module, SlimBatchNorm2d):
            for param in _BN_NAMES:
                targets[f"{tv}.{param}"] = _Target(name, param, module.channels, ())
        elif isinstance(module, SlicedConv2d):
            targets[f"{tv}.weight"] = _Target(name, "weight", None, (2, 3))
            if module.bias is not None:
                targets[f"{tv}.bias"] = _Target(name, "bias", None, ())
        elif isinstance(module, SlicedLinear):
            targets[f"{tv}.weight"] = _Target(name, "weight", None, (0,))
            targets[f"{tv}.bias"] = _Target(name, "bias", None, (0,))
    return targets


def _layout(keys: Iterable[str]) -> tuple[int, ...]:
    """Blocks per ``layer{i}`` of a torchvision key set (0 for a missing layer below the highest)."""
    blocks: dict[int, int] = {}
    for key in keys:
        found = _LAYER_KEY.match(key)
        if found:
            layer, block = int(found.group(1)), int(found.group(2))
            blocks[layer] = max(blocks.get(layer, 0), block + 1)
    return tuple(blocks.get(i, 0) for i in range(1, max(blocks, default=0) + 1))


def _shape(t: torch.Tensor | tuple[int, ...]) -> str:
    return str(list(t.shape if isinstance(t, torch.Tensor) else t))


def _tensor_problem(key: str, value: object, target: _Target, current: torch.Tensor) -> str | None:
    """Why ``value`` cannot go into ``current`` (the supernet's tensor at the widest width), or None."""
    if not isinstance(value, torch.Tensor):
        return f"{key} is a {type(value).__name__}, not a tensor"
    if value.layout != torch.strided or value.is_quantized or value.is_meta:
        return f"{key} is a {'meta' if value.is_meta else 'quantised' if value.is_quantized else 'sparse'} tensor"
    if target.name == "num_batches_tracked":
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool or value.numel() != 1:
            return f"{key} must be one integer, got {str(value.dtype).removeprefix('torch.')} {_shape(value)}"
        return None
    if not value.is_floating_point():
        return f"{key} is {str(value.dtype).removeprefix('torch.')}, not a floating-point tensor"
    if value.dim() != current.dim():
        return f"{key} has shape {_shape(value)}, the supernet's {target.module}.{target.name} {_shape(current)}"
    if any(value.shape[d] != current.shape[d] for d in target.exact_dims):
        return (f"{key} has shape {_shape(value)}, the supernet's {target.module}.{target.name} {_shape(current)} "
                f"(dimensions {list(target.exact_dims)} must match)")
    wider = [d for d in range(value.dim()) if value.shape[d] > current.shape[d]]
    if wider:
        return (f"{key} is wider than the supernet: file {_shape(value)}, "
                f"supernet {target.module}.{target.name} {_shape(current)}")
    return None


def _copy_prefix(dest: torch.Tensor, value: torch.Tensor) -> None:
    n = [min(a, b) for a, b in zip(dest.shape, value.shape)]
    index = tuple(slice(0, k) for k in n)
    dest[index] = value[index].to(dest.dtype)


def from_torchvision_resnet(state: Mapping[str, torch.Tensor], spec: ArchSpec) -> dict[str, torch.Tensor]:
    """A full supernet state dict for ``spec`` holding a torchvision ResNet state dict's weights.

    Starts from a freshly initialised ``Supernet(spec)`` and copies every torchvision tensor into the prefix of
    its supernet tensor (convolutions ``[:out, :in]``, BatchNorm affine ``[:c]``, classifier ``[:, :in]``).  A
    per-width BatchNorm's choice whose width is torchvision's gets torchvision's running statistics exactly; each
    other choice gets their prefix (narrower) or holds them in its prefix (wider).  The gate keeps its init.
    Raises ``CheckpointError`` listing every problem: a key with no place in ``spec``, a missing key, a different
    number of stages or blocks, a tensor wider than the supernet's, a non-floating-point tensor.
    """
    problems: list[str] = [f"key {k!r} is not a string" for k in state if not isinstance(k, str)]
    state = {k: v for k, v in state.items() if isinstance(k, str)}
    not_residual = [f"{i}: {s.block}" for i, s in enumerate(spec.stages) if s.block not in _RESIDUAL_BLOCKS]
    if not_residual:
        problems.append(f"{spec.name!r} is not a ResNet (stages {', '.join(not_residual)}; "
                        f"torchvision weights fit {' or '.join(_RESIDUAL_BLOCKS)} stages only)")
    file_layout, spec_layout = _layout(state), tuple(s.layers for s in spec.stages)
    if file_layout != spec_layout:
        problems.append(f"the file has {len(file_layout)} stages of {list(file_layout)} blocks, "
                        f"{spec.name!r} has {len(spec_layout)} of {list(spec_layout)}")

    with torch.no_grad():
        model = Supernet(spec)
    result = {k: v.detach().clone() for k, v in model.state_dict().items()}
    targets = _targets(model)
    unexpected = [k for k in state if k not in targets]
    problems += [f"{k} has no place in {spec.name!r}" for k in unexpected]
    missing = [k for k in targets if k not in state]
    if missing:
        problems.append(f"the file lacks {len(missing)} key(s) {spec.name!r} needs: {', '.join(missing[:_LIST_LIMIT])}"
                        + (", ..." if len(missing) > _LIST_LIMIT else ""))

    copies: list[tuple[str, torch.Tensor, _Target]] = []
    for key, value in state.items():
        target = targets.get(key)
        if target is None:
            continue
        if target.bn is None:
            current = result[f"{target.module}.{target.name}"]
        elif target.name in ("weight", "bias"):
            current = result[f"{target.module}.aux_bn.{len(target.bn) - 1}.{target.name}"]
        elif target.name == "num_batches_tracked":
            current = result[f"{target.module}.aux_bn.0.{target.name}"]
        else:  # running statistics: the widest choice bounds what fits
            current = result[f"{target.module}.aux_bn.{len(target.bn) - 1}.{target.name}"]
        problem = _tensor_problem(key, value, target, current)
        if problem:
            problems.append(problem)
        else:
            copies.append((key, value, target))

    if problems:
        shown = "; ".join(problems[:_LIST_LIMIT])
        more = f"; ... and {len(problems) - _LIST_LIMIT} more" if len(problems) > _LIST_LIMIT else ""
        raise CheckpointError(f"torchvision ResNet weights do not fit {spec.name!r}: {shown}{more}")

    for _key, value, target in copies:
        value = value.detach().cpu()
        if target.bn is None:
            _copy_prefix(result[f"{target.module}.{target.name}"], value)
        elif target.name in ("weight", "bias"):
            _copy_prefix(result[f"{target.module}.aux_bn.{len(target.bn) - 1}.{target.name}"], value)
        else:  # statistics go to every width choice: exact at torchvision's width, a prefix elsewhere
            for k in range(len(target.bn)):
                dest = result[f"{target.module}.aux_bn.{k}.{target.name}"]
                if target.name == "num_batches_tracked":
                    dest.copy_(value.reshape(()))
                else:
                    _copy_prefix(dest, value)
    return result
