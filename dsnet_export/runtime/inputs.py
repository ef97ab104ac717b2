"""Inputs for the dispatcher: image files and folders (preprocessed per the manifest) and arrays.

Images follow the manifest's input spec: RGB (or grey for 1 channel), short side resized to
``resize`` and centre-cropped (or resized straight to the input size when ``resize`` is unset),
scaled to [0, 1], normalised with ``mean``/``std``, laid out CHW.  Arrays (.npy, .npz) are taken
as already preprocessed; ``.npy`` is one batch (or one sample), each array of an ``.npz`` a batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DsnetError
from .manifest import InputInfo

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}
_FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling values


@dataclass(frozen=True)
class InputBatch:
    name: str
    array: np.ndarray  # [N, C, H, W] float32


def preprocess_image(image, spec: InputInfo) -> np.ndarray:
    """A PIL image or an image path -> [C, H, W] float32, as the manifest's input spec says."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        try:
            with Image.open(image) as opened:
                opened.load()
                image = opened
        except (OSError, ValueError) as exc:
            raise DsnetError(f"{image}: not a readable image ({exc})") from None
    channels, height, width = spec.shape
    image = image.convert("RGB" if channels == 3 else "L")
    resample = _FILTERS.get(spec.interpolation, _FILTERS["bilinear"])
    if spec.resize:
        scale = spec.resize / min(image.size)
        size = (max(width, round(image.size[0] * scale)), max(height, round(image.size[1] * scale)))
        image = image.resize(size, resample)
        left, top = (image.size[0] - width) // 2, (image.size[1] - height) // 2
        image = image.crop((left, top, left + width, top + height))
    else:
        image = image.resize((width, height), resample)
    array = np.asarray(image, dtype=np.float32).reshape(height, width, channels) / 255.0
    mean, std = np.array(spec.mean, np.float32), np.array(spec.std, np.float32)
    return np.ascontiguousarray(((array - mean) / std).transpose(2, 0, 1))


def preprocess_frame(frame: np.ndarray, spec: InputInfo) -> np.ndarray:
    """An OpenCV frame (H x W x 3, uint8, BGR) -> [C, H, W] float32, as ``preprocess_image``."""
    from PIL import Image

    return preprocess_image(Image.fromarray(np.ascontiguousarray(frame[..., ::-1])), spec)


def iter_inputs(paths: list[str | os.PathLike], spec: InputInfo) -> Iterator[InputBatch]:
    """Every input named by ``paths``: image files, folders of images (recursively, sorted), arrays."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                raise DsnetError(f"{path}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            for image in images:
                yield InputBatch(str(image), preprocess_image(image, spec)[None])
        elif not path.is_file():
            raise DsnetError(f"{path}: no such file or directory")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            yield InputBatch(str(path), preprocess_image(path, spec)[None])
        elif path.suffix.lower() == ".npy":
            yield InputBatch(str(path), _as_batch(_load_array(path), str(path)))
        elif path.suffix.lower() == ".npz":
            try:
                with np.load(path, allow_pickle=False) as archive:
                    arrays = {k: archive[k] for k in archive.files}
            except (OSError, ValueError) as exc:
                raise DsnetError(f"{path}: not a readable .npz ({exc})") from None
            for key, array in arrays.items():
                yield InputBatch(f"{path}:{key}", _as_batch(array, f"{path}:{key}"))
        else:
            raise DsnetError(f"{path}: unsupported input (images, folders, .npy or .npz)")


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DsnetError(f"{path}: not a readable .npy ({exc})") from None


def _as_batch(array: np.ndarray, name: str) -> np.ndarray:
    """[C,H,W] or [N,C,H,W] floating point -> float32 [N,C,H,W]; the dispatcher checks the rest."""
    if not np.issubdtype(array.dtype, np.floating):
        raise DsnetError(f"{name}: arrays must hold preprocessed floating-point values, got {array.dtype}")
    if array.ndim == 3:
        array = array[None]
    return np.ascontiguousarray(array, dtype=np.float32)
