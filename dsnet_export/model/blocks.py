"""Slimmable blocks, one class per ``StageSpec.block`` type, and their dense twins.

Every block type offers the same three calls so the supernet never needs to know which
family it is running:

* ``pre_gate(x) -> (features, gate_hidden)``: the part a gate engine computes,
* ``post_gate(features, out_channels)``: the rest of the block at a chosen width,
* ``to_dense(in_channels, out_channels)``: a plain ``nn.Module`` copy of one width.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..arch.spec import ArchSpec, StageSpec
from .layers import SlicedConv2d, SlimBatchNorm2d, swish

_BLOCKS: dict[str, type[nn.Module]] = {}


def register_block(block_type: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        _BLOCKS[block_type] = cls
        return cls
    return wrap


def build_block(block_type: str, **kwargs) -> nn.Module:
    return _BLOCKS[block_type](**kwargs)


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swish(x)


class SqueezeExcite(nn.Module):
    """Squeeze-excite whose hidden layer doubles as the gate's input (DS-Net's MultiHeadGate).

    ``gate.0`` (only in the gated block) maps the hidden vector to one logit per route.
    The hidden width is fixed per block; only the channel side of reduce/expand is sliced.
    """

    def __init__(self, channels: tuple[int, ...], hidden: int, num_routes: int = 0, *, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.conv_reduce = SlicedConv2d(channels[-1], hidden, bias=True, **factory)
        self.conv_expand = SlicedConv2d(hidden, channels[-1], bias=True, **factory)
        self.gate = nn.Sequential(SlicedConv2d(hidden, num_routes, **factory)) if num_routes else None

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """ReLU(reduce(mean_hw(x))): the shared squeeze vector, shape [N, hidden, 1, 1]."""
        return F.relu(self.conv_reduce(x.mean((2, 3), keepdim=True)))

    def excite(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv_expand(hidden, x.shape[1]))

    def gate_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            raise RuntimeError("this squeeze-excite has no gate head")
        return self.gate(hidden).flatten(1)


class DenseSqueezeExcite(nn.Module):
    def __init__(self, conv_reduce: nn.Conv2d, conv_expand: nn.Conv2d):
        super().__init__()
        self.conv_reduce, self.conv_expand = conv_reduce, conv_expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(self.conv_reduce(x.mean((2, 3), keepdim=True)))
        return x * torch.sigmoid(self.conv_expand(hidden))


@register_block("ds")
class DepthwiseSeparableBlock(nn.Module):
    """dw kxk -> BN -> swish -> squeeze-excite -> pw 1x1 -> BN -> swish (no residual).

    The gate (when present) reads the squeeze-excite's hidden vector, so everything up to
    and including the SE multiplication runs before the width is known.
    """

    def __init__(self, spec: ArchSpec, stage: StageSpec, in_channels: tuple[int, ...],
                 out_channels: tuple[int, ...], stride: int, has_gate: bool, *, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.conv_dw = SlicedConv2d(in_channels[-1], in_channels[-1], stage.kernel, stride, depthwise=True, **factory)
        self.bn1 = SlimBatchNorm2d(in_channels, spec.bn_eps, **factory)
        hidden = spec.se_channels(in_channels, stage.se_ratio)
        self.gate = SqueezeExcite(in_channels, hidden, spec.num_routes if has_gate else 0, **factory)
        self.conv_pw = SlicedConv2d(in_channels[-1], out_channels[-1], **factory)
        self.bn2 = SlimBatchNorm2d(out_channels, spec.bn_eps, **factory)

    def pre_gate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = swish(self.bn1(self.conv_dw(x)))
        hidden = self.gate.hidden(x)
        return self.gate.excite(x, hidden), hidden

    def post_gate(self, features: torch.Tensor, out_channels: int) -> torch.Tensor:
        return swish(self.bn2(self.conv_pw(features, out_channels)))

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        return self.post_gate(self.pre_gate(x)[0], out_channels)

    def to_dense(self, in_channels: int, out_channels: int) -> nn.Module:
        return nn.Sequential(
            self.conv_dw.to_dense(in_channels, in_channels),
            self.bn1.to_dense(in_channels),
            Swish(),
            DenseSqueezeExcite(self.gate.conv_reduce.to_dense(self.gate.conv_reduce.weight.shape[0], in_channels),
                               self.gate.conv_expand.to_dense(in_channels, self.gate.conv_expand.weight.shape[1])),
            self.conv_pw.to_dense(out_channels, in_channels),
            self.bn2.to_dense(out_channels),
            Swish(),
        )


class SlimStage(nn.Module):
    """``first_block`` (stride, width change, maybe the gate) + ``residual_blocks`` (official names)."""

    def __init__(self, spec: ArchSpec, index: int, *, device=None, dtype=None):
        super().__init__()
        stage = spec.stages[index]
        common = {"spec": spec, "stage": stage, "device": device, "dtype": dtype}
        self.first_block = build_block(stage.block, in_channels=spec.stage_input_channels(index),
                                       out_channels=stage.channels, stride=stage.stride,
                                       has_gate=index == spec.gate.stage, **common)
        self.residual_blocks = nn.ModuleList(
            build_block(stage.block, in_channels=stage.channels, out_channels=stage.channels, stride=1,
                        has_gate=False, **common)
            for _ in range(stage.layers - 1)
        )

    def blocks(self) -> list[nn.Module]:
        return [self.first_block, *self.residual_blocks]

    def forward_rest(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        for block in self.residual_blocks:
            x = block(x, out_channels)
        return x

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        return self.forward_rest(self.first_block(x, out_channels), out_channels)
