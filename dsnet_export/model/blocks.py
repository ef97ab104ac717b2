"""The supernet's stage container; each block's module comes from its block family.

A family's ``torch`` part (see ``arch.families``) is an ``nn.Module`` built from a ``BlockSite``
that offers the same calls whatever the family, so the supernet never needs to know which one
it runs:

* ``pre_gate(x) -> (features, gate_input)``: the part a gate engine computes,
* ``gate_logits(gate_input)``: the gate head (the gated block only),
* ``post_gate(features, out_channels)``: the rest of the block at a chosen width,
* ``forward(x, out_channels)`` and ``to_dense(in_channels, out_channels)``: a plain copy of one width.
"""

from __future__ import annotations

import torch
from torch import nn

from ..arch import ArchSpec, block_family, iter_blocks
from .layers import SlicedConv2d, activation


class Activation(nn.Module):
    """The spec's activation as a module (dense extracted networks)."""

    def __init__(self, name: str):
        super().__init__()
        self.name, self.fn = name, activation(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


class DenseResidual(nn.Module):
    """A residual block of one width: ``after(body(x) + shortcut(x))``; no shortcut adds ``x`` itself."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None, after: nn.Module | None = None):
        super().__init__()
        self.body, self.shortcut = body, shortcut
        self.after = after if after is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(self.body(x) + (x if self.shortcut is None else self.shortcut(x)))


def run_shortcut(layers: nn.Sequential | None, x: torch.Tensor, out_channels: int) -> torch.Tensor:
    """A slimmable shortcut's layers in order; a sliced convolution among them gets the output width."""
    for layer in layers or ():
        x = layer(x, out_channels) if isinstance(layer, SlicedConv2d) else layer(x)
    return x


class SlimStage(nn.Module):
    """``first_block`` (stride, width change, maybe the gate) + ``residual_blocks`` (official names)."""

    def __init__(self, spec: ArchSpec, index: int, *, device=None, dtype=None):
        super().__init__()
        blocks = [block_family(site.stage.block).part("torch")(site, device=device, dtype=dtype)
                  for site in iter_blocks(spec) if site.stage_index == index]
        self.first_block = blocks[0]
        self.residual_blocks = nn.ModuleList(blocks[1:])
