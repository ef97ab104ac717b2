"""Write a dataset split as PNG images in class folders, to try `python -m dsnet_export run` on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dsnet_export.datasets import ArrayDataset


def export_split(data: ArrayDataset, split: str, out: Path) -> int:
    s = data.split(split)
    for i, (image, label) in enumerate(zip(s.images, s.labels)):
        folder = out / data.classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (np.clip(image.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{split}_{i:04d}.png")
    return len(s.labels)
