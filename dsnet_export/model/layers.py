"""Sliceable layers: full-size tensors, used at a prefix width chosen per call.

Parameter names mirror the official DS-Net modules (``weight``, ``bias``, ``aux_bn.{i}``) so an
official state dict loads without renaming.  No layer stores a width: the width comes from
the input's channel count or from the caller.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..arch import conv_padding


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


#: The activations an ``ArchSpec`` may name (``arch.spec.ACTIVATIONS``), as torch functions.
ACTIVATION_FUNCTIONS = {"swish": swish, "relu": torch.relu}


def activation(name: str):
    """The torch function of the spec's activation ``name``."""
    return ACTIVATION_FUNCTIONS[name]


class SlicedConv2d(nn.Module):
    """A convolution stored at its widest shape and run on a prefix ``[:out, :in]``.

    ``depthwise=True`` stores one filter per channel and slices only the first dimension.
    """

    def __init__(self, max_in: int, max_out: int, kernel: int = 1, stride: int = 1, *,
                 depthwise: bool = False, bias: bool = False, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.kernel, self.stride, self.depthwise = kernel, stride, depthwise
        self.padding = conv_padding(kernel, stride)
        in_per_group = 1 if depthwise else max_in
        self.weight = nn.Parameter(torch.empty(max_out, in_per_group, kernel, kernel, **factory))
        self.bias = nn.Parameter(torch.empty(max_out, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """EfficientNet-style init, as the official ``efficientnet_init_weights``."""
        fan_out = self.kernel * self.kernel * (1 if self.depthwise else self.weight.shape[0])
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / fan_out))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def sliced(self, out_channels: int, in_channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The dense weight and bias of the ``[out_channels, in_channels]`` prefix."""
        if self.depthwise:
            weight = self.weight[:out_channels]
        else:
            weight = self.weight[:out_channels, :in_channels]
        bias = self.bias[:out_channels] if self.bias is not None else None
        return weight, bias

    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        cin = x.shape[1]
        cout = cin if self.depthwise else (out_channels or self.weight.shape[0])
        weight, bias = self.sliced(cout, cin)
        return F.conv2d(x, weight, bias, self.stride, self.padding, groups=cin if self.depthwise else 1)

    def to_dense(self, out_channels: int, in_channels: int) -> nn.Conv2d:
        weight, bias = self.sliced(out_channels, in_channels)
        groups = in_channels if self.depthwise else 1
        conv = nn.Conv2d(in_channels, out_channels, self.kernel, self.stride, self.padding, groups=groups,
                         bias=bias is not None, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(weight)
            if bias is not None:
                conv.bias.copy_(bias)
        return conv


class SlicedLinear(nn.Module):
    """A classifier stored at its widest input and run on ``weight[:, :in]`` (bias unsliced)."""

    def __init__(self, max_in: int, out_features: int, *, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, max_in, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.weight.shape[0])
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, : x.shape[1]], self.bias)

    def to_dense(self, in_features: int) -> nn.Linear:
        linear = nn.Linear(in_features, self.weight.shape[0], device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(self.weight[:, :in_features])
            linear.bias.copy_(self.bias)
        return linear


class SlimBatchNorm2d(nn.Module):
    """BatchNorm with running statistics per width and one shared, sliced affine.

    ``aux_bn[i]`` holds the statistics for ``channels[i]``; only the last (widest) has the
    affine weight and bias, and its ``eps``/``momentum`` apply to every width (as official).
    The width is read from the input, so the statistics always match the channels present.
    """

    def __init__(self, channels: tuple[int, ...], eps: float = 1e-5, momentum: float = 0.1, *,
                 device=None, dtype=None):
        super().__init__()
        self.channels = tuple(channels)
        factory = {"device": device, "dtype": dtype}
        self.aux_bn = nn.ModuleList(
            [nn.BatchNorm2d(c, eps=eps, momentum=momentum, affine=False, **factory) for c in channels[:-1]]
            + [nn.BatchNorm2d(channels[-1], eps=eps, momentum=momentum, affine=True, **factory)]
        )

    def index_of(self, width: int) -> int:
        try:
            return self.channels.index(width)
        except ValueError:
            raise ValueError(f"no BatchNorm statistics for width {width}; widths: {list(self.channels)}") from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = x.shape[1]
        stats = self.aux_bn[self.index_of(width)]
        affine = self.aux_bn[-1]
        factor = 0.0
        if self.training:
            stats.num_batches_tracked.add_(1)
            # momentum None: a cumulative average (how statistics are recalibrated after training).
            factor = affine.momentum if affine.momentum is not None else 1.0 / float(stats.num_batches_tracked)
        return F.batch_norm(x, stats.running_mean, stats.running_var, affine.weight[:width], affine.bias[:width],
                            self.training, factor, affine.eps)

    def reset_statistics(self, momentum: float | None) -> None:
        """Forget every width's running statistics; ``momentum`` None averages what comes next."""
        for bn in self.aux_bn:
            bn.reset_running_stats()
        self.aux_bn[-1].momentum = momentum

    def to_dense(self, width: int) -> nn.BatchNorm2d:
        stats, affine = self.aux_bn[self.index_of(width)], self.aux_bn[-1]
        bn = nn.BatchNorm2d(width, eps=affine.eps, momentum=affine.momentum,
                            device=affine.weight.device, dtype=affine.weight.dtype)
        with torch.no_grad():
            bn.weight.copy_(affine.weight[:width])
            bn.bias.copy_(affine.bias[:width])
            bn.running_mean.copy_(stats.running_mean)
            bn.running_var.copy_(stats.running_var)
        return bn.eval()
