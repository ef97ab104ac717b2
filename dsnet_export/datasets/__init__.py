"""Datasets for training and evaluation, torch-free: the built-in digits and image folders.

Both are loaded for one ``Preprocessing`` (from the architecture's input spec or a bundle's manifest),
so training and evaluation feed the network exactly what the exported runtime feeds it.
"""

from __future__ import annotations

from ..errors import DsnetError
from .classes import match_classes
from .corruptions import CorruptionConfig
from .digits import load_digits
from .folder import FolderDataset, load_image_folder
from .splits import DEFAULT_FRACTIONS, SPLITS, ArrayDataset, AugmentConfig, Split, training_batches

Dataset = ArrayDataset | FolderDataset


def resolve_split(data: Dataset, split: str | None, where: str) -> str:
    """``split``, or the dataset's default when None; a split the dataset lacks is a user error."""
    split = split or data.default_split
    if split not in data.splits:
        raise DsnetError(f"{where}: no split {split!r} (it has {', '.join(data.splits)})")
    return split


def load_dataset(name_or_path: str, preprocessing, *, split_seed: int = 0,
                 fractions: tuple[float, float] = DEFAULT_FRACTIONS) -> Dataset:
    """``digits`` (built in) or a folder of class sub-folders, for ``preprocessing``."""
    if name_or_path == "digits":
        return load_digits(preprocessing, seed=split_seed, fractions=fractions)
    return load_image_folder(name_or_path, preprocessing, split_seed=split_seed, fractions=fractions)


__all__ = ["DEFAULT_FRACTIONS", "SPLITS", "ArrayDataset", "AugmentConfig", "CorruptionConfig", "Dataset",
           "FolderDataset", "Split", "load_dataset", "load_digits", "load_image_folder", "match_classes",
           "resolve_split", "training_batches"]
