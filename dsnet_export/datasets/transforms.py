"""Image operations on numpy batches [N, C, H, W] in [0, 1] (no torch, no scipy)."""

from __future__ import annotations

import numpy as np


def interpolation_matrix(out_size: int, in_size: int) -> np.ndarray:
    """Bilinear resampling as a matrix (align-corners off, like torch/PIL): out = M @ in."""
    m = np.zeros((out_size, in_size), np.float32)
    for i in range(out_size):
        src = min(max((i + 0.5) * in_size / out_size - 0.5, 0.0), in_size - 1.0)
        lo = int(np.floor(src))
        hi = min(lo + 1, in_size - 1)
        m[i, lo] += 1.0 - (src - lo)
        m[i, hi] += src - lo
    return m


def resize(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    height, width = (size, size) if isinstance(size, int) else size
    rows = interpolation_matrix(height, images.shape[-2])
    cols = interpolation_matrix(width, images.shape[-1])
    return np.einsum("hi,ncij,wj->nchw", rows, images, cols, optimize=True).astype(np.float32)


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge replication, as two small matrix products."""
    size = images.shape[-1]
    idx = np.arange(size)
    kernel = np.exp(-0.5 * ((idx[:, None] - idx[None, :]) / max(sigma, 1e-3)) ** 2)
    kernel /= kernel.sum(axis=1, keepdims=True)
    return np.einsum("hi,ncij,wj->nchw", kernel, images, kernel, optimize=True).astype(np.float32)


def random_affine(images: np.ndarray, rng: np.random.Generator, *, shift: float, degrees: float,
                  scale: tuple[float, float]) -> np.ndarray:
    """Per-sample random rotation, scale and shift, bilinear, zero padding."""
    n, _, h, w = images.shape
    angle = np.deg2rad(rng.uniform(-degrees, degrees, n))
    zoom = rng.uniform(*scale, n)
    offset = rng.uniform(-shift, shift, (n, 2))
    ys, xs = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    cos, sin = np.cos(angle)[:, None, None] / zoom[:, None, None], np.sin(angle)[:, None, None] / zoom[:, None, None]
    src_y = cos * ys - sin * xs + (h - 1) / 2 - offset[:, 0, None, None]
    src_x = sin * ys + cos * xs + (w - 1) / 2 - offset[:, 1, None, None]
    return _bilinear(images, src_y, src_x)


def _bilinear(images: np.ndarray, src_y: np.ndarray, src_x: np.ndarray) -> np.ndarray:
    n, c, h, w = images.shape
    y0, x0 = np.floor(src_y).astype(int), np.floor(src_x).astype(int)
    fy, fx = (src_y - y0)[:, None], (src_x - x0)[:, None]
    out = np.zeros_like(images)
    batch = np.arange(n)[:, None, None]
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            inside = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w))[:, None]
            values = images[batch, :, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)].transpose(0, 3, 1, 2)
            out += wy * wx * values * inside
    return out

