"""Datasets as fixed, seeded train/validation/test splits of images in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .corruptions import CorruptionConfig, corrupt, draw_severity
from .transforms import normalize, random_affine


@dataclass(frozen=True)
class Split:
    images: np.ndarray    # [N, C, H, W] float32 in [0, 1] (validation/test: already corrupted)
    labels: np.ndarray    # [N] int64
    severity: np.ndarray  # [N] float32 (0 for clean)


@dataclass(frozen=True)
class Dataset:
    name: str
    classes: list[str]
    train: Split          # clean; corrupted afresh every epoch by ``training_batches``
    val: Split
    test: Split
    mean: tuple[float, ...]
    std: tuple[float, ...]
    corruption: CorruptionConfig | None = field(default=None)

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}")
        return getattr(self, name)

    def normalized(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        s = self.split(name)
        return normalize(s.images, self.mean, self.std), s.labels


def split_indices(labels: np.ndarray, fractions: tuple[float, float], seed: int) -> tuple[np.ndarray, ...]:
    """Stratified, seeded (train, val, test) index arrays; ``fractions`` = (val, test)."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val, n_test = int(round(len(idx) * fractions[0])), int(round(len(idx) * fractions[1]))
        parts[1] += idx[:n_val].tolist()
        parts[2] += idx[n_val:n_val + n_test].tolist()
        parts[0] += idx[n_val + n_test:].tolist()
    return tuple(np.sort(np.array(p, dtype=np.int64)) for p in parts)


def make_splits(images: np.ndarray, labels: np.ndarray, fractions: tuple[float, float], seed: int,
                corruption: CorruptionConfig | None) -> tuple[Split, Split, Split]:
    """Train stays clean; validation and test are corrupted once, with their own fixed seeds."""
    out = []
    for k, idx in enumerate(split_indices(labels, fractions, seed)):
        x, y = images[idx], labels[idx]
        severity = np.zeros(len(idx), np.float32)
        if k > 0 and corruption is not None:
            rng = np.random.default_rng([seed, k])
            severity = draw_severity(len(idx), rng, corruption)
            x = corrupt(x, severity, rng, corruption)
        out.append(Split(x, y, severity))
    return tuple(out)


@dataclass(frozen=True)
class AugmentConfig:
    shift: float = 2.5
    degrees: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)


DEFAULT_AUGMENT = AugmentConfig()


def training_batches(data: Dataset, batch_size: int, rng: np.random.Generator, *,
                     augment: AugmentConfig | None = DEFAULT_AUGMENT, corrupted: bool = True):
    """One epoch of shuffled, augmented, freshly corrupted, normalised (x, y) numpy batches."""
    train = data.train
    order = rng.permutation(len(train.labels))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        x = train.images[idx]
        if augment is not None:
            x = random_affine(x, rng, shift=augment.shift, degrees=augment.degrees, scale=augment.scale)
        if corrupted and data.corruption is not None:
            x = corrupt(x, draw_severity(len(idx), rng, data.corruption), rng, data.corruption)
        yield normalize(x, data.mean, data.std), train.labels[idx]
