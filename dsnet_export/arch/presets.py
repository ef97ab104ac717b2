"""Registered architectures."""

from __future__ import annotations

from .registry import register_arch
from .spec import ArchSpec, GateSpec, InputSpec, StageSpec, StemSpec


@register_arch
def ds_mbnet() -> ArchSpec:
    """DS-MBNet: the official ``slimmable_mbnet_v1_bn_uniform`` (MobileNetV1 + SE, no residuals).

    Stage 3's first block carries the gate; its four routes are uniform widths 0..3 as in the
    official gate training (``num_choice: 4``).
    """
    return ArchSpec(
        name="ds_mbnet",
        official_name="slimmable_mbnet_v1_bn_uniform",
        stem=StemSpec(channels=(16, 24), kernel=3, stride=2),
        stages=(
            StageSpec(channels=(32, 88), layers=1, kernel=3, stride=1),
            StageSpec(channels=(48, 168), layers=2, kernel=3, stride=2),
            StageSpec(channels=(96, 264), layers=2, kernel=3, stride=2),
            StageSpec(channels=tuple(range(224, 641, 32)), layers=6, kernel=3, stride=2),
            StageSpec(channels=tuple(range(736, 1153, 32)), layers=2, kernel=3, stride=2),
        ),
        gate=GateSpec(stage=3, routes=(0, 1, 2, 3)),
        num_classes=1000,
        input=InputSpec(channels=3, height=224, width=224, mean=(0.485, 0.456, 0.406),
                        std=(0.229, 0.224, 0.225), resize=256, interpolation="bicubic"),
    )


@register_arch
def ds_mbnet_tiny() -> ArchSpec:
    """A few-channel DS-MBNet for 32x32 inputs, for fast tests.

    The gate sits in stage 2 (not 3, unlike ``ds_mbnet``) and the gated stages have one
    width more than the gate uses, so tests cover a forced-only ``uniform:4`` route.
    """
    return ArchSpec(
        name="ds_mbnet_tiny",
        stem=StemSpec(channels=(8, 12), kernel=3, stride=2),
        stages=(
            StageSpec(channels=(16, 24), layers=1, kernel=3, stride=1),
            StageSpec(channels=(24, 32), layers=2, kernel=3, stride=2),
            StageSpec(channels=(32, 40, 48, 56, 64), layers=2, kernel=3, stride=2),
            StageSpec(channels=(64, 80, 96, 112, 128), layers=1, kernel=3, stride=2),
        ),
        gate=GateSpec(stage=2, routes=(0, 1, 2, 3)),
        num_classes=10,
        input=InputSpec(channels=3, height=32, width=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
    )


@register_arch
def ds_mbnet_digits() -> ArchSpec:
    """A DS-MBNet for 32x32 images that trains on 2 CPU cores in minutes (the embedded default model).

    Same blocks as DS-MBNet (depthwise-separable + squeeze-excite, no residuals); the gate sits in
    stage 2 and picks one of four widths for stages 2 and 3 (0.5x .. 1x of the widest).
    Mean/std match ``dsnet_export.datasets.digits``.
    """
    return ArchSpec(
        name="ds_mbnet_digits",
        stem=StemSpec(channels=(16, 24), kernel=3, stride=1),
        stages=(
            StageSpec(channels=(24, 32), layers=1, kernel=3, stride=2),
            StageSpec(channels=(32, 48), layers=2, kernel=3, stride=2),
            # se_ratio 0.5: the squeeze-excite's hidden layer is also the gate's input (24 values).
            StageSpec(channels=(48, 64, 80, 96), layers=3, kernel=3, stride=1, se_ratio=0.5),
            StageSpec(channels=(96, 128, 160, 192), layers=2, kernel=3, stride=2),
        ),
        gate=GateSpec(stage=2, routes=(0, 1, 2, 3)),
        num_classes=10,
        input=InputSpec(channels=3, height=32, width=32, mean=(0.31, 0.31, 0.31), std=(0.32, 0.32, 0.32)),
    )


#: ImageNet input as torchvision's ResNet weights expect it: short side 256 (bilinear), centre crop 224.
_IMAGENET = InputSpec(channels=3, height=224, width=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                      resize=256, interpolation="bilinear")


def _quarters(widest: int) -> tuple[int, ...]:
    """Slimming ratios 0.25, 0.5, 0.75, 1 of ``widest``."""
    return tuple(widest * k // 4 for k in range(1, 5))


def _imagenet_resnet(name: str, block: str, stage_one: int, layers: tuple[int, int, int, int],
                     widest: tuple[int, int, int]) -> ArchSpec:
    """torchvision's ResNet layout as a DS-Net supernet: 7x7 stem + max pool and stage 1 at the ResNet's widths, the
    gate on stage 1's output, stages 2-4 at ``_quarters`` of their ``widest`` widths, ReLU, ImageNet input."""
    return ArchSpec(
        name=name,
        stem=StemSpec(channels=(64,), kernel=7, stride=2, pool=True),
        stages=(
            StageSpec(channels=(stage_one,), layers=layers[0], kernel=3, stride=1, block=block),
            *(StageSpec(channels=_quarters(w), layers=n, kernel=3, stride=2, block=block)
              for w, n in zip(widest, layers[1:])),
        ),
        gate=GateSpec(stage=1, routes=(0, 1, 2, 3)),
        num_classes=1000,
        input=_IMAGENET,
        activation="relu",
    )


@register_arch
def ds_resnet50() -> ArchSpec:
    """DS-ResNet-50: torchvision's ResNet-50 (bottleneck, v1.5) as a dynamic slimmable supernet.

    From the papers (DS-Net, CVPR 2021, arXiv 2103.13258; DS-Net++, arXiv 2109.10060): ResNet-50 is the backbone,
    each supernet stage's width is set by the gate's slimming ratio, and the gate is double-headed (attention +
    slimming).  The stored copies of both papers give only their abstracts ("2-4x computation reduction", "1.62x
    real-world acceleration"); the width choices, gate position and MAdds table of DS-ResNet were not found, and the
    official code has no ResNet.  Chosen here, and why:

    * widths 0.25 / 0.5 / 0.75 / 1 x ResNet-50's in stages 2-4 (``_quarters``), four gate routes as the official gate
      (``num_choice: 4``), so route 3 is exactly ResNet-50 and ImageNet weights a user has load into it;
    * the stem and stage 1 keep ResNet-50's widths and the gate reads stage 1's output (pool -> 64 -> ReLU -> 4,
      the slimming head, ``se_ratio`` 0.25 of 256; a ResNet block has no squeeze-excite for an attention head to
      share), so every route shares the gate's features; the smallest route then costs 1.03 G MAdds against
      ResNet-50's 4.09 G (4.0x fewer, inside the papers' "2-4x");
    * the bottleneck's inner width is a quarter of its output width at every ratio, as in ResNet-50.
    """
    return _imagenet_resnet("ds_resnet50", "bottleneck", 256, (3, 4, 6, 3), (512, 1024, 2048))


@register_arch
def ds_resnet18() -> ArchSpec:
    """DS-ResNet-18: the ``ds_resnet50`` recipe on torchvision's ResNet-18 (basic blocks).

    Not in the papers: the same choices as ``ds_resnet50`` (stem and stage 1 at ResNet-18's widths, the gate on
    stage 1's output with a 16-wide hidden layer, widths 0.25-1 x in stages 2-4, route 3 = ResNet-18).
    """
    return _imagenet_resnet("ds_resnet18", "basic", 64, (2, 2, 2, 2), (128, 256, 512))


@register_arch
def ds_resnet_digits() -> ArchSpec:
    """A small DS-ResNet (basic blocks) for the 32x32 digits, trained here like ``ds_mbnet_digits``.

    3x3 stem without pooling (the images are small); stage 1 fixed, the gate on its output; stages 2-3 at four
    widths (0.5x .. 1x of the widest); mean/std of ``dsnet_export.datasets.digits``.
    """
    return ArchSpec(
        name="ds_resnet_digits",
        stem=StemSpec(channels=(16,), kernel=3, stride=1),
        stages=(
            StageSpec(channels=(24,), layers=1, kernel=3, stride=2, block="basic"),
            StageSpec(channels=(24, 32, 40, 48), layers=2, kernel=3, stride=2, block="basic", se_ratio=0.5),
            StageSpec(channels=(48, 64, 80, 96), layers=2, kernel=3, stride=2, block="basic"),
        ),
        gate=GateSpec(stage=1, routes=(0, 1, 2, 3)),
        num_classes=10,
        input=InputSpec(channels=3, height=32, width=32, mean=(0.31, 0.31, 0.31), std=(0.32, 0.32, 0.32)),
        activation="relu",
    )
