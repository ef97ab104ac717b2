"""In-memory datasets (the built-in digits) as fixed, seeded train/validation/test splits in [0, 1]."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..imaging import Preprocessing
from .corruptions import CorruptionConfig, corrupt, draw_severity
from .transforms import random_affine

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.15, 0.2)  # validation, test


@dataclass(frozen=True)
class Split:
    images: np.ndarray    # [N, C, H, W] float32 in [0, 1] (validation/test: already corrupted)
    labels: np.ndarray    # [N] int64
    severity: np.ndarray  # [N] float32 (0 for clean)


@dataclass(frozen=True)
class ArrayDataset:
    """Images held in memory at the network's input size; ``preprocessing`` only normalises them."""

    name: str
    classes: list[str]
    train: Split          # clean; corrupted afresh every epoch by ``training_batches``
    val: Split
    test: Split
    preprocessing: Preprocessing
    corruption: CorruptionConfig | None = field(default=None)
    split_seed: int = 0
    splits = SPLITS
    default_split = "test"  # what evaluation scores when no split is named

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r} (one of {', '.join(SPLITS)})")
        return getattr(self, name)

    def labels(self, split: str) -> np.ndarray:
        return self.split(split).labels

    def normalized(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        s = self.split(split)
        return self.preprocessing.normalize(s.images), s.labels

    def batches(self, split: str, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Normalised (x, y) batches of a split, in order."""
        s = self.split(split)
        for start in range(0, len(s.labels), batch_size):
            yield self.preprocessing.normalize(s.images[start:start + batch_size]), s.labels[start:start + batch_size]

    def describe(self) -> dict:
        """What a checkpoint records about its training data."""
        return {"dataset": self.name, "split_seed": self.split_seed, "classes": list(self.classes),
                "preprocessing": self.preprocessing.as_dict()}


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


def training_batches(data: ArrayDataset, batch_size: int, rng: np.random.Generator, *,
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
        yield data.preprocessing.normalize(x), train.labels[idx]
