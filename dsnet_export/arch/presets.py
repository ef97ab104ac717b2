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
