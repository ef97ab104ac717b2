"""``basic`` and ``bottleneck`` in torch: the slimmable block, its dense twin and its masked forward."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...arch.blocks import BlockSite, needs_projection
from ...model.blocks import Activation, DenseResidual, run_shortcut
from ...model.layers import SlicedConv2d, SlimBatchNorm2d, activation
from . import body, gate_width, step_width


class ResidualGate(nn.Module):
    """pool -> 1x1 reduce (bias) -> ReLU -> 1x1 head: one logit per route from the block's input."""

    def __init__(self, channels: tuple[int, ...], hidden: int, num_routes: int, *, device=None, dtype=None):
        super().__init__()
        self.conv_reduce = SlicedConv2d(channels[-1], hidden, bias=True, device=device, dtype=dtype)
        self.gate = nn.Sequential(SlicedConv2d(hidden, num_routes, device=device, dtype=dtype))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv_reduce(x.mean((2, 3), keepdim=True)))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.gate(hidden).flatten(1)


class ResidualBlock(nn.Module):
    """``act(body(x) + shortcut(x))``, the body being ``conv{n} -> bn{n}`` steps with the activation between
    them (``families.resnet.body``).  The gated block's gate reads ``x``, so ``pre_gate`` computes nothing of
    the block and ``post_gate`` is the whole block."""

    def __init__(self, site: BlockSite, *, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.site = site
        self.steps = body(site)
        width = site.in_channels
        for step in self.steps:
            self.add_module(f"conv{step.n}", SlicedConv2d(width[-1], step.out_channels[-1], step.kernel,
                                                          step.stride, **factory))
            self.add_module(f"bn{step.n}", SlimBatchNorm2d(step.out_channels, site.spec.bn_eps, **factory))
            width = step.out_channels
        self.downsample = None
        if needs_projection(site):
            self.downsample = nn.Sequential(
                SlicedConv2d(site.in_channels[-1], site.out_channels[-1], 1, site.stride, **factory),
                SlimBatchNorm2d(site.out_channels, site.spec.bn_eps, **factory))
        nn.init.zeros_(getattr(self, f"bn{self.steps[-1].n}").aux_bn[-1].weight)  # start as the shortcut
        self.gate = (ResidualGate(site.in_channels, gate_width(site), site.spec.num_routes, **factory)
                     if site.gated else None)
        self.activation = site.spec.activation
        self.act = activation(site.spec.activation)

    def pre_gate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.gate is None:
            raise RuntimeError(f"{self.site.prefix} holds no gate")
        return x, self.gate.hidden(x)

    def gate_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            raise RuntimeError(f"{self.site.prefix} holds no gate")
        return self.gate.logits(hidden)

    def gate_parameters(self) -> list[nn.Parameter]:
        """What only the gate uses (Stage II trains these): its reduce layer and head; no route runs them."""
        if self.gate is None:
            raise RuntimeError(f"{self.site.prefix} holds no gate")
        return list(self.gate.parameters())

    def post_gate(self, features: torch.Tensor, out_channels: int) -> torch.Tensor:
        return self.forward(features, out_channels)

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        out = x
        for i, step in enumerate(self.steps):
            out = getattr(self, f"bn{step.n}")(getattr(self, f"conv{step.n}")(out, step_width(step, self.site,
                                                                                          out_channels)))
            if i < len(self.steps) - 1:
                out = self.act(out)
        shortcut = run_shortcut(self.downsample, x, out_channels)
        if shortcut.shape[1] != out.shape[1]:
            raise ValueError(f"{self.site.prefix}: the identity shortcut carries {shortcut.shape[1]} channels, "
                             f"the block makes {out.shape[1]}: a route must give this block one width in and out")
        return self.act(out + shortcut)

    def to_dense(self, in_channels: int, out_channels: int) -> nn.Module:
        layers: list[nn.Module] = []
        width = in_channels
        for i, step in enumerate(self.steps):
            out = step_width(step, self.site, out_channels)
            layers += [getattr(self, f"conv{step.n}").to_dense(out, width), getattr(self, f"bn{step.n}").to_dense(out)]
            if i < len(self.steps) - 1:
                layers.append(Activation(self.activation))
            width = out
        shortcut = None
        if self.downsample is not None:
            conv, bn = self.downsample
            shortcut = nn.Sequential(conv.to_dense(out_channels, in_channels), bn.to_dense(out_channels))
        return DenseResidual(nn.Sequential(*layers), shortcut, Activation(self.activation))


def masked_forward(block: ResidualBlock, site: BlockSite, x: torch.Tensor, cin: int, cout: int, ctx,
                   after_gate: bool) -> torch.Tensor:
    """Every convolution at full width, its output masked, each BatchNorm with each sample's statistics (masked
    too); the shortcut likewise.  ``after_gate`` changes nothing: the gate ran nothing of this block."""
    out, width = x, cin
    for i, step in enumerate(block.steps):
        full = step.out_channels[-1]
        out = ctx.mask(ctx.conv(getattr(block, f"conv{step.n}"), out, full, width), step.out_channels)
        out = ctx.batch_norm(getattr(block, f"bn{step.n}"), out, step.out_channels)
        if i < len(block.steps) - 1:
            out = block.act(out)
        width = full
    shortcut = x
    if block.downsample is not None:
        conv, bn = block.downsample
        shortcut = ctx.batch_norm(bn, ctx.mask(ctx.conv(conv, x, cout, cin), site.out_channels), site.out_channels)
    return block.act(out + shortcut)
