"""Image folders (``root/<class>/<image>``, or ``root/{train,val,test}/<class>/<image>``), streamed from disk.

Only the file list lives in memory: images are decoded and preprocessed when a batch is asked for,
so a folder of full-size photos or an ImageNet-style tree works at the network's real input size.
A folder without ``train``/``val``/``test`` sub-folders is split by a seeded, stratified draw; the
whole folder is the split ``all``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DsnetError
from ..imaging import Preprocessing, list_images
from .splits import DEFAULT_FRACTIONS, split_indices

PREDEFINED = ("train", "val", "test")


@dataclass(frozen=True)
class FolderDataset:
    name: str
    root: Path
    classes: list[str]
    files: list[Path]
    targets: np.ndarray                  # [N] int64, index into ``classes``
    parts: dict[str, np.ndarray]         # split name -> indices into ``files``
    preprocessing: Preprocessing
    split_seed: int | None = None        # None: the folder's own train/val/test sub-folders
    fractions: tuple[float, float] = field(default=DEFAULT_FRACTIONS)
    default_split = "all"  # a folder is scored whole unless a split is named

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.parts)

    def indices(self, split: str) -> np.ndarray:
        if split not in self.parts:
            raise DsnetError(f"{self.root}: no split {split!r} (this folder has {', '.join(self.parts)})")
        return self.parts[split]

    def labels(self, split: str) -> np.ndarray:
        return self.targets[self.indices(split)]

    def paths(self, split: str) -> list[Path]:
        return [self.files[i] for i in self.indices(split)]

    def batches(self, split: str, batch_size: int, *, threads: int | None = None
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Decoded, preprocessed (x, y) batches of a split, in file order (decoding runs in threads:
        Pillow releases the GIL while it decodes and resamples)."""
        idx = self.indices(split)
        with ThreadPoolExecutor(threads or min(8, os.cpu_count() or 1)) as pool:
            for start in range(0, len(idx), batch_size):
                part = idx[start:start + batch_size]
                x = np.stack(list(pool.map(self.preprocessing, [self.files[i] for i in part])))
                yield x, self.targets[part]

    def describe(self) -> dict:
        return {"dataset": self.name, "root": str(self.root), "split_seed": self.split_seed,
                "classes": list(self.classes), "preprocessing": self.preprocessing.as_dict()}


def class_folders(root: Path) -> list[str]:
    """Class sub-folder names, sorted by number when every name is an integer (so "10" follows "9")."""
    names = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if names and all(n.isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def load_image_folder(root: str | os.PathLike, preprocessing: Preprocessing, *, split_seed: int = 0,
                      fractions: tuple[float, float] = DEFAULT_FRACTIONS) -> FolderDataset:
    root = Path(root)
    if not root.is_dir():
        raise DsnetError(f"{root}: no such folder (give a folder with one sub-folder of images per class, "
                         f"or 'digits')")
    if (root / "train").is_dir() and any((root / s).is_dir() for s in PREDEFINED[1:]):
        return _predefined(root, preprocessing)
    classes = class_folders(root)
    files, targets = _scan(root, classes)
    if not classes or not files:
        raise DsnetError(f"{root}: expected one sub-folder of images per class (found no images in sub-folders)")
    targets = np.array(targets, np.int64)
    train, val, test = split_indices(targets, fractions, split_seed)
    parts = {"all": np.arange(len(files)), "train": train, "val": val, "test": test}
    return FolderDataset(root.name, root, classes, files, targets, parts, preprocessing, split_seed, fractions)


def _scan(root: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    files, targets = [], []
    for label, name in enumerate(classes):
        found = list_images(root / name)
        files += found
        targets += [label] * len(found)
    return files, targets


def _predefined(root: Path, preprocessing: Preprocessing) -> FolderDataset:
    classes = class_folders(root / "train")
    if not classes:
        raise DsnetError(f"{root / 'train'}: expected one sub-folder of images per class")
    files, targets, parts = [], [], {}
    for split in PREDEFINED:
        if not (root / split).is_dir():
            continue
        unknown = sorted(set(class_folders(root / split)) - set(classes))
        if unknown:
            raise DsnetError(f"{root / split}: class folder(s) not in train/: {', '.join(unknown[:8])}")
        found, labels = _scan(root / split, classes)
        parts[split] = np.arange(len(files), len(files) + len(found))
        files += found
        targets += labels
    parts["all"] = np.arange(len(files))
    return FolderDataset(root.name, root, classes, files, np.array(targets, np.int64), parts, preprocessing, None)
