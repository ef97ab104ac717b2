"""The ``ds`` block in torch: the slimmable module, its dense twin and its masked forward."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...arch.blocks import BlockSite
from ...model.blocks import Activation, DenseResidual, run_shortcut
from ...model.layers import SlicedConv2d, SlimBatchNorm2d, activation
from . import se_width, shortcut_convolves, shortcut_pools


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


class DepthwiseSeparableBlock(nn.Module):
    """dw kxk -> BN -> act -> squeeze-excite -> pw 1x1 -> BN -> act (no residual).

    The gate (when present) reads the squeeze-excite's hidden vector, so everything up to
    and including the SE multiplication runs before the width is known.
    """

    def __init__(self, site: BlockSite, *, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        spec, cin, cout = site.spec, site.in_channels, site.out_channels
        self.conv_dw = SlicedConv2d(cin[-1], cin[-1], site.stage.kernel, site.stride, depthwise=True, **factory)
        self.bn1 = SlimBatchNorm2d(cin, spec.bn_eps, **factory)
        self.gate = SqueezeExcite(cin, se_width(site), spec.num_routes if site.gated else 0, **factory)
        self.conv_pw = SlicedConv2d(cin[-1], cout[-1], **factory)
        self.bn2 = SlimBatchNorm2d(cout, spec.bn_eps, **factory)
        self.activation = spec.activation
        self.act = activation(spec.activation)
        self.downsample = _official_shortcut(site, **factory)
        if site.stage.residual:  # the official init_residual_norm: each block starts as its shortcut
            nn.init.zeros_(self.bn2.aux_bn[-1].weight)
        self.residual = site.stage.residual

    def pre_gate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.act(self.bn1(self.conv_dw(x)))
        hidden = self.gate.hidden(x)
        return self.gate.excite(x, hidden), hidden

    def gate_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.gate.gate_logits(hidden)

    def gate_parameters(self) -> list[nn.Parameter]:
        """What only the gate uses (Stage II trains these): the head; its hidden layer is the block's SE."""
        if self.gate.gate is None:
            raise RuntimeError("this block holds no gate")
        return list(self.gate.gate.parameters())

    def post_gate(self, features: torch.Tensor, out_channels: int) -> torch.Tensor:
        return self.act(self.bn2(self.conv_pw(features, out_channels)))

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        out = self.post_gate(self.pre_gate(x)[0], out_channels)
        return out + run_shortcut(self.downsample, x, out_channels) if self.residual else out

    def to_dense(self, in_channels: int, out_channels: int) -> nn.Module:
        body = self._dense_body(in_channels, out_channels)
        if not self.residual:
            return body
        shortcut = [layer.to_dense(out_channels, in_channels) if isinstance(layer, SlicedConv2d) else layer
                    for layer in self.downsample]
        return DenseResidual(body, nn.Sequential(*shortcut) if shortcut else None)

    def _dense_body(self, in_channels: int, out_channels: int) -> nn.Sequential:
        return nn.Sequential(
            self.conv_dw.to_dense(in_channels, in_channels),
            self.bn1.to_dense(in_channels),
            Activation(self.activation),
            DenseSqueezeExcite(self.gate.conv_reduce.to_dense(self.gate.conv_reduce.weight.shape[0], in_channels),
                               self.gate.conv_expand.to_dense(in_channels, self.gate.conv_expand.weight.shape[1])),
            self.conv_pw.to_dense(out_channels, in_channels),
            self.bn2.to_dense(out_channels),
            Activation(self.activation),
        )


def _official_shortcut(site: BlockSite, *, device=None, dtype=None) -> nn.Sequential:
    """The official ``downsample``: [2x2 average pool] [sliced 1x1 convolution]; empty for an identity."""
    layers: list[nn.Module] = []
    if shortcut_pools(site):
        layers.append(nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False))
    if shortcut_convolves(site):
        layers.append(SlicedConv2d(site.in_channels[-1], site.out_channels[-1], device=device, dtype=dtype))
    return nn.Sequential(*layers)


def masked_forward(block: DepthwiseSeparableBlock, site: BlockSite, x: torch.Tensor, cin: int, cout: int, ctx,
                   after_gate: bool) -> torch.Tensor:
    """dw -> mask -> BN -> act -> SE (expand masked) | pw -> mask -> BN -> act [+ shortcut, masked], at full width.

    ``ctx`` masks channels and normalises per sample (``bench.masking_torch``); ``after_gate``: the
    gated block itself, whose first half the pre-gate network already ran."""
    residual = x
    if not after_gate:
        x = ctx.mask(ctx.conv(block.conv_dw, x, cin, cin), site.in_channels)
        x = block.act(ctx.batch_norm(block.bn1, x, site.in_channels))
        se = block.gate
        hidden = F.relu(ctx.conv(se.conv_reduce, x.mean((2, 3), keepdim=True), se.conv_reduce.weight.shape[0], cin))
        attention = ctx.mask(ctx.conv(se.conv_expand, hidden, cin, hidden.shape[1]), site.in_channels)
        x = x * torch.sigmoid(attention)
    x = ctx.mask(ctx.conv(block.conv_pw, x, cout, cin), site.out_channels)
    x = block.act(ctx.batch_norm(block.bn2, x, site.out_channels))
    if not block.residual:
        return x
    for layer in block.downsample:
        residual = (ctx.mask(ctx.conv(layer, residual, cout, cin), site.out_channels)
                    if isinstance(layer, SlicedConv2d) else layer(residual))
    return x + residual
