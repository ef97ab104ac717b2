"""Graded corruptions: every sample gets a severity in [0, 1] and all four effects scale with it.

Clean and mildly corrupted digits stay easy for a narrow subnet; strongly corrupted ones need a
wide one.  That spread is what gives a DS-Net gate something to learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .transforms import gaussian_blur


@dataclass(frozen=True)
class CorruptionConfig:
    clean_fraction: float = 0.25       # samples left untouched (severity 0)
    min_severity: float = 0.2          # the others draw severity uniformly from [min, 1]
    noise_std: float = 0.45            # Gaussian noise std at severity 1
    blur_sigma: float = 1.6            # blur at severity 1 (mixed in with weight = severity)
    contrast_loss: float = 0.6         # fraction of contrast removed at severity 1
    occlusion_size: float = 0.45       # side of the occluding square at severity 1, as a fraction of the image


def draw_severity(n: int, rng: np.random.Generator, config: CorruptionConfig) -> np.ndarray:
    severity = rng.uniform(config.min_severity, 1.0, n).astype(np.float32)
    severity[rng.random(n) < config.clean_fraction] = 0.0
    return severity


def corrupt(images: np.ndarray, severity: np.ndarray, rng: np.random.Generator,
            config: CorruptionConfig = CorruptionConfig()) -> np.ndarray:
    """Blur, contrast loss, noise and an occluding square, each scaled by the sample's severity."""
    out = images.astype(np.float32, copy=True)
    hit = np.flatnonzero(severity > 0)  # severity 0 leaves a sample exactly as it was
    if hit.size == 0:
        return out
    out[hit] = _degrade(images[hit], severity[hit], rng, config)
    return out


def _degrade(images: np.ndarray, severity: np.ndarray, rng: np.random.Generator,
             config: CorruptionConfig) -> np.ndarray:
    s = severity.reshape(-1, 1, 1, 1).astype(np.float32)
    out = (1 - s) * images + s * gaussian_blur(images, config.blur_sigma)
    background = out.mean(axis=(1, 2, 3), keepdims=True)
    out = background + (out - background) * (1 - config.contrast_loss * s)
    out = out + rng.standard_normal(images.shape).astype(np.float32) * config.noise_std * s
    size = images.shape[-1]
    for i in range(len(severity)):
        side = int(round(config.occlusion_size * size * severity[i]))
        if side > 0 and rng.random() < severity[i]:
            top, left = rng.integers(0, size - side + 1, 2)
            out[i, :, top:top + side, left:left + side] = rng.uniform(0, 1)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
