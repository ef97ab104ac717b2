"""Training data: the architecture's preprocessing, the dataset loaded for it, and per-epoch batches.

Digits (built in, in memory) are augmented with numpy (affine + graded corruptions).  Image folders
stream from disk through torch's DataLoader: worker processes decode each image and apply the
training transform of the same ``Preprocessing`` that evaluation and the exported runtime use.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from dsnet_export.arch import ArchSpec, InputSpec, get_arch
from dsnet_export.datasets import Dataset, FolderDataset, load_dataset, training_batches
from dsnet_export.errors import DsnetError
from dsnet_export.imaging import Preprocessing, TrainAugment
from dsnet_export.model.checkpoint import training_data as recorded_data

MIN_INPUT, MAX_INPUT = 8, 4096
UNREADABLE = -1  # labels at or below this mark images a worker could not decode (UNREADABLE - index)


def resized_input(spec: InputSpec, size: int) -> InputSpec:
    """``spec`` at ``size`` x ``size``; the resize-before-crop short side scales with it."""
    if not MIN_INPUT <= size <= MAX_INPUT:
        raise DsnetError(f"--input-size {size}: must be in {MIN_INPUT}..{MAX_INPUT}")
    resize = None if spec.resize is None else round(spec.resize * size / spec.height)
    return dataclasses.replace(spec, height=size, width=size, resize=resize)


def _preset_at(arch: str, input_size: int) -> ArchSpec:
    """The preset at ``input_size`` (0: the preset's own)."""
    spec = get_arch(arch)
    return dataclasses.replace(spec, input=resized_input(spec.input, input_size)) if input_size else spec


def training_spec(arch: str, input_size: int, classes: list[str], dataset: str, log=print) -> ArchSpec:
    """The preset, at ``input_size`` (0: the preset's), with one output per dataset class."""
    spec = _preset_at(arch, input_size)
    if spec.num_classes != len(classes):
        log(f"note: {arch} has {spec.num_classes} classes; training a {len(classes)}-class head for {dataset}")
        spec = dataclasses.replace(spec, num_classes=len(classes))
    return spec


def load_training_data(dataset: str, arch: str, input_size: int, split_seed: int) -> Dataset:
    """``dataset`` loaded for the preset's preprocessing at ``input_size``."""
    return load_dataset(dataset, Preprocessing.from_spec(_preset_at(arch, input_size).input), split_seed=split_seed)


def warn_if_other_data(dataset: str, checkpoint: Path) -> None:
    """Stage II on other data than Stage I is allowed, but rarely meant."""
    name = recorded_data(checkpoint).get("dataset")
    if name is not None and name not in (dataset, Path(dataset).name):
        print(f"warning: {checkpoint} was trained on {name!r}, not {dataset!r}", file=sys.stderr)


def data_for_checkpoint(dataset: str, spec: ArchSpec, checkpoint: Path, split_seed: int | None) -> Dataset:
    """The data a model trained on, split as it was (a different split seed would put training images
    in the test numbers), preprocessed as its spec says."""
    recorded = recorded_data(checkpoint)
    seed = recorded.get("split_seed")
    if split_seed is not None and seed is not None and split_seed != seed:
        raise DsnetError(f"--split-seed {split_seed}: {checkpoint} was trained on the split drawn with seed {seed}; "
                         f"another seed would mix its training images into validation and test")
    seed = split_seed if split_seed is not None else (seed if seed is not None else 0)
    return load_dataset(dataset, Preprocessing.from_spec(spec.input), split_seed=seed)


class _FolderImages(torch.utils.data.Dataset):
    """One decoded, transformed image per index; the random crop is seeded by (epoch seed, index), so a
    run is reproducible whatever the number of workers."""

    def __init__(self, data: FolderDataset, split: str, augment: TrainAugment | None, seed: int):
        self.files, self.targets = data.paths(split), data.labels(split)
        self.preprocessing, self.augment, self.seed = data.preprocessing, augment, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            if self.augment is None:
                x = self.preprocessing(self.files[i])
            else:
                x = self.preprocessing.train(self.files[i], np.random.default_rng([self.seed, i]), self.augment)
        except DsnetError:  # an unreadable file: marked, so the main process can name it and drop it
            p = self.preprocessing
            return torch.zeros(p.channels, p.height, p.width), UNREADABLE - i
        return torch.from_numpy(x), int(self.targets[i])


class TrainBatches:
    """Shuffled training batches, one epoch per ``epoch(rng)`` call, as torch tensors on ``device``."""

    def __init__(self, data: Dataset, batch_size: int, *, device: str = "cpu", workers: int = 0,
                 augment: bool = True, crop_scale: float = TrainAugment.scale[0], flip: bool = True):
        self.data, self.batch_size, self.device, self.augment = data, batch_size, device, augment
        self.images = len(data.labels("train"))
        if self.images == 0:
            raise DsnetError(f"{data.name}: the training split is empty")
        self.per_epoch = math.ceil(self.images / batch_size)
        self._folder, self.skipped = None, set()
        if isinstance(data, FolderDataset):
            transform = TrainAugment(scale=(crop_scale, 1.0), flip=flip) if augment else None
            self._folder = _FolderImages(data, "train", transform, seed=0)
            self._workers = workers

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._folder is None:
            kwargs = {} if self.augment else {"augment": None}
            for x, y in training_batches(self.data, self.batch_size, rng, **kwargs):
                yield torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)
            return
        seed = int(rng.integers(2**62))
        self._folder.seed = seed  # workers get a copy of the dataset when the loader starts
        loader = torch.utils.data.DataLoader(
            self._folder, batch_size=self.batch_size, shuffle=True, num_workers=self._workers,
            generator=torch.Generator().manual_seed(seed), pin_memory=self.device.startswith("cuda"))
        for x, y in loader:
            bad = y <= UNREADABLE
            if bad.any():
                x, y = self._drop_unreadable(x, y, bad)
                if len(y) == 0:
                    continue
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _drop_unreadable(self, x: torch.Tensor, y: torch.Tensor, bad: torch.Tensor):
        for marker in y[bad].tolist():
            path = self._folder.files[UNREADABLE - marker]
            if path not in self.skipped:
                self.skipped.add(path)
                print(f"warning: skipped {path}: not a readable image", file=sys.stderr)
        return x[~bad], y[~bad]


def eval_batches(data: Dataset, split: str, batch_size: int, device, mapping: np.ndarray | None = None
                 ) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """Preprocessed (x on ``device``, numpy labels) batches of a split, in order; ``mapping`` turns dataset
    class indices into model outputs (see ``datasets.match_classes``)."""
    for x, y in data.batches(split, batch_size):
        yield torch.from_numpy(x).to(device), (y if mapping is None else mapping[y])
