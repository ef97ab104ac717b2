"""Inputs for the dispatcher: image files and folders (preprocessed per the manifest) and arrays.

Images are decoded and preprocessed by ``dsnet_export.imaging`` from the manifest's input spec, the
same definition training used.  Arrays (.npy, .npz) are taken
as already preprocessed; ``.npy`` is one batch (or one sample), each array of an ``.npz`` a batch.

Unreadable images.  By default the first image that cannot be decoded raises ``DsnetError`` (``--strict``).
Given ``on_error(name, error)``, an unreadable image inside a folder, or an unreadable image file named among
several inputs, is reported to that callback and skipped (``warn_skipped`` prints the usual one-line
warning).  An image file that is the only input is always an error: there is nothing else to run.  Missing
paths, unsupported files, empty folders and unreadable or non-float arrays stay errors in both modes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DsnetError
from ..imaging import IMAGE_SUFFIXES, Preprocessing, list_images
from .manifest import InputInfo

#: ``on_error(name, error)``: called for an unreadable image that is skipped.
OnError = Callable[[str, DsnetError], None]


@dataclass(frozen=True)
class InputBatch:
    name: str
    array: np.ndarray  # [N, C, H, W] float32
    image: bool = False  # one decoded image file (a batch of 1), not an array the user gave


def preprocess_image(image, spec: InputInfo | Preprocessing) -> np.ndarray:
    """A PIL image or an image path -> [C, H, W] float32, as the manifest's input spec says."""
    return Preprocessing.of(spec)(image)


def preprocess_frame(frame: np.ndarray, spec: InputInfo | Preprocessing) -> np.ndarray:
    """An OpenCV frame (H x W x 3, uint8, BGR) -> [C, H, W] float32, as ``preprocess_image``."""
    return Preprocessing.of(spec).frame(frame)


def iter_inputs(paths: list[str | os.PathLike], spec: InputInfo | Preprocessing, *,
                on_error: OnError | None = None) -> Iterator[InputBatch]:
    """Every input named by ``paths``: image files, folders of images (recursively, sorted), arrays.

    ``on_error`` None: an unreadable image raises.  Else it is called and the image skipped, except an image
    file that is the only input, which still raises (see the module docstring)."""
    prep, paths = Preprocessing.of(spec), list(paths)
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            images = list_images(path)
            if not images:
                raise DsnetError(f"{path}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            for image in images:
                yield from _image(image, prep, on_error)
        elif not path.is_file():
            raise DsnetError(f"{path}: no such file or directory")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            yield from _image(path, prep, on_error if len(paths) > 1 else None)
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


SKIPPED = object()  # what ``load_or_skip`` returns for a file it skipped


def load_or_skip(load: Callable[[Path], object], path: Path, on_error: OnError | None):
    """``load(path)``; an unreadable file raises when ``on_error`` is None, else is reported to it and
    ``SKIPPED`` comes back (the one skip rule of ``run``, ``calibrate`` and the media sources)."""
    try:
        return load(path)
    except DsnetError as exc:
        if on_error is None:
            raise
        on_error(str(path), exc)
        return SKIPPED


def _image(path: Path, prep: Preprocessing, on_error: OnError | None) -> Iterator[InputBatch]:
    array = load_or_skip(prep, path, on_error)
    if array is not SKIPPED:
        yield InputBatch(str(path), array[None], image=True)


def skip_reason(name: str, error: Exception) -> str:
    """The error's message without the leading ``name: `` the decoder puts there."""
    text = " ".join(str(error).split())  # one line
    return text[len(name) + 2:] if text.startswith(f"{name}: ") else text


def warn_skipped(name: str, error: Exception) -> None:
    """The usual ``on_error``: one line on stderr naming the input and the reason."""
    print(f"warning: skipped {name}: {skip_reason(name, error)}", file=sys.stderr)


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
