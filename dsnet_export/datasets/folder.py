"""ImageFolder-style datasets: ``root/<class>/<image>`` read with PIL (e.g. CIFAR-10 or ImageNet in folders)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DsnetError
from ..runtime.inputs import IMAGE_SUFFIXES
from .splits import Dataset, make_splits


def load_image_folder(root: str | os.PathLike, *, size: int = 32, seed: int = 0,
                      fractions: tuple[float, float] = (0.15, 0.2), mean=(0.5, 0.5, 0.5),
                      std=(0.25, 0.25, 0.25)) -> Dataset:
    """Every image under a class folder, resized to ``size`` x ``size`` RGB; fixed stratified splits.
    (No corruptions: your data's own difficulty is what the gate learns.)"""
    from PIL import Image

    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise DsnetError(f"{root}: expected one sub-folder of images per class")
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(path) as img:
                    rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            except OSError as exc:
                raise DsnetError(f"{path}: not a readable image ({exc})") from None
            images.append(np.asarray(rgb, np.float32).transpose(2, 0, 1) / 255.0)
            labels.append(label)
    if len(set(labels)) < 2:
        raise DsnetError(f"{root}: needs images in at least two class folders")
    train, val, test = make_splits(np.stack(images), np.array(labels, np.int64), fractions, seed, None)
    return Dataset(root.name, classes, train, val, test, tuple(mean), tuple(std))
