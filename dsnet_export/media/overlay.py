"""Text overlays on frames."""

from __future__ import annotations

import numpy as np

from ._cv import cv2


def draw_overlay(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """Draw ``lines`` top-left on a dark band, in place; returns the image."""
    cv = cv2()
    scale = max(image.shape[0], 240) / 720
    height = int(30 * scale) + 4
    band = image[: height * len(lines) + 8]
    band[...] = (band * 0.4).astype(image.dtype)
    for i, text in enumerate(lines):
        cv.putText(image, text, (8, height * (i + 1)), cv.FONT_HERSHEY_SIMPLEX, 0.8 * scale, (255, 255, 255),
                   max(1, int(2 * scale)), cv.LINE_AA)
    return image
