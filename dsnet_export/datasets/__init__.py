"""Datasets for training and evaluation, as numpy (no torch): digits and image folders."""

from __future__ import annotations

from pathlib import Path

from .corruptions import CorruptionConfig
from .digits import load_digits
from .folder import load_image_folder
from .splits import AugmentConfig, Dataset, Split, training_batches


def load_dataset(name_or_path: str, *, size: int = 32, seed: int = 0) -> Dataset:
    """``digits`` or a folder of class sub-folders."""
    if name_or_path == "digits":
        return load_digits(size=size, seed=seed)
    return load_image_folder(Path(name_or_path), size=size, seed=seed)


__all__ = ["AugmentConfig", "CorruptionConfig", "Dataset", "Split", "load_dataset", "load_digits",
           "load_image_folder", "training_batches"]
