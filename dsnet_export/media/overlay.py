"""Text overlays on frames."""

from __future__ import annotations

import numpy as np

from ._cv import cv2

#: Frames smaller than this (short side, pixels) are enlarged first, so the text stays legible.
MIN_SIDE = 240


def draw_overlay(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """``lines`` top-left on a dark band; returns the annotated frame (enlarged if it was small)."""
    cv = cv2()
    short = min(image.shape[:2])
    if short < MIN_SIDE:
        factor = -(-MIN_SIDE // short)  # an integer factor keeps pixels crisp
        image = cv.resize(image, (image.shape[1] * factor, image.shape[0] * factor), interpolation=cv.INTER_NEAREST)
    else:
        image = image.copy()
    scale = max(image.shape[0], MIN_SIDE) / 720
    height = int(30 * scale) + 4
    band = image[: height * len(lines) + 8]
    band[...] = (band * 0.4).astype(image.dtype)
    for i, text in enumerate(lines):
        cv.putText(image, text, (8, height * (i + 1)), cv.FONT_HERSHEY_SIMPLEX, 0.8 * scale, (255, 255, 255),
                   max(1, int(2 * scale)), cv.LINE_AA)
    return image
