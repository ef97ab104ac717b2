"""One walk over an architecture's blocks, and the convolution geometry every world shares.

Cost, the torch supernet, the ONNX emitters and both masked forms all walk the blocks with
``iter_blocks``: each ``BlockSite`` says where a block sits (its state-dict prefix, which keeps
the official DS-Net names), which width choices it maps from and to, and its stride.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .spec import ArchSpec, StageSpec


def conv_padding(kernel: int, stride: int) -> int:
    """The official DSConv2d padding, ((stride-1) + (kernel-1)) // 2 on every side."""
    return ((stride - 1) + (kernel - 1)) // 2


def conv_output_size(size: int, kernel: int, stride: int) -> int:
    """Output size of a convolution padded by ``conv_padding``."""
    return (size + 2 * conv_padding(kernel, stride) - kernel) // stride + 1


@dataclass(frozen=True)
class BlockSite:
    """One block of an architecture, as every world sees it."""

    spec: ArchSpec
    stage_index: int
    layer: int                     # 0: the stage's first block (stride, width change, maybe the gate)
    prefix: str                    # state-dict prefix, e.g. "blocks.3.first_block"
    in_channels: tuple[int, ...]   # the block's input width choices
    out_channels: tuple[int, ...]  # its output width choices (the stage's)
    stride: int

    @property
    def stage(self) -> StageSpec:
        return self.spec.stages[self.stage_index]

    @property
    def gated(self) -> bool:
        """True for the block that holds the gate: the gate engine runs its first half."""
        return self.layer == 0 and self.stage_index == self.spec.gate.stage

    @property
    def after_gate(self) -> bool:
        """True for the gated block and every block after it (they run at the route's width)."""
        return self.stage_index >= self.spec.gate.stage


def iter_blocks(spec: ArchSpec) -> Iterator[BlockSite]:
    """Every block of ``spec`` in execution order."""
    for i, stage in enumerate(spec.stages):
        for layer in range(stage.layers):
            first = layer == 0
            yield BlockSite(spec, i, layer,
                            f"blocks.{i}.first_block" if first else f"blocks.{i}.residual_blocks.{layer - 1}",
                            spec.stage_input_channels(i) if first else stage.channels, stage.channels,
                            stage.stride if first else 1)


def gated_site(spec: ArchSpec) -> BlockSite:
    """The block whose first half ends the gate engine."""
    return next(site for site in iter_blocks(spec) if site.gated)


def needs_projection(site: BlockSite) -> bool:
    """True when a residual block's shortcut must change resolution or width (the official blocks' and
    torchvision's rule: stride above 1, or different widest input and output widths)."""
    return site.stride != 1 or max(site.in_channels) != max(site.out_channels)


def identity_shortcut_problem(spec: ArchSpec, stage_index: int) -> str | None:
    """Why the first block of stage ``stage_index`` cannot add its input without a convolution, or None.

    Such a shortcut adds input and output channel by channel, so every route must give the block the same width
    on both sides: the same width choices, and not the gated stage (its routes change the width that the stages
    before the gate keep).  Callers ask only when their shortcut has no projection."""
    stage = spec.stages[stage_index]
    if spec.stage_input_channels(stage_index) != stage.channels:
        return ("its shortcut has no projection (same widest width in and out), so its input needs the same "
                f"width choices as its output: {list(spec.stage_input_channels(stage_index))} in, "
                f"{list(stage.channels)} out")
    if stage_index == spec.gate.stage:
        return ("its shortcut has no projection (same widest width in and out), but the gate changes this "
                "stage's width and not its input's: give the stage a different widest width")
    return None
