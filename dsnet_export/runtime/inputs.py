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

import io
import math
import os
import struct
import sys
import tokenize
import zipfile
import zlib
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
        if _is(path, Path.is_dir):
            images = list_images(path)
            if not images:
                raise DsnetError(f"{path}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            for image in images:
                yield from _image(image, prep, on_error)
        elif not _is(path, Path.is_file):
            raise DsnetError(f"{path}: no such file or directory")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            yield from _image(path, prep, on_error if len(paths) > 1 else None)
        elif path.suffix.lower() == ".npy":
            yield InputBatch(str(path), _as_batch(_load_array(path), str(path)))
        elif path.suffix.lower() == ".npz":
            for key, array in _load_archive(path).items():
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


def _is(path: Path, test) -> bool:
    """``path.is_dir()`` / ``path.is_file()``; a path the system cannot even look up (too long, ...) is neither."""
    try:
        return test(path)
    except (OSError, ValueError):
        return False


#: What reading a hostile array file can raise (besides ``DsnetError``): all of them mean "not a readable array".
_READ_ERRORS = (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, SyntaxError, RecursionError,
                OverflowError, NotImplementedError, RuntimeError, MemoryError, zipfile.BadZipFile, zlib.error,
                struct.error, tokenize.TokenError)  # numpy parses a .npy header as a Python literal
#: Deflate cannot expand data more than ~1032 times: a member that claims more is not what it says.
_MAX_DEFLATE_RATIO = 1100


def _load_array(path: Path) -> np.ndarray:
    """A ``.npy`` file's array; the header is checked against the file size before anything is allocated."""
    try:
        with open(path, "rb") as f:
            return _read_npy(f, os.fstat(f.fileno()).st_size, str(path))
    except OSError as exc:
        raise DsnetError(f"{path}: not a readable .npy ({_reason(exc)})") from None


def read_npy_bytes(data: bytes, name: str = "the body") -> np.ndarray:
    """The floating-point array of ``.npy`` bytes that came from elsewhere (an HTTP body): the header is checked
    against the bytes' length before anything is allocated; anything unreadable is a ``DsnetError``."""
    return _read_npy(io.BytesIO(data), len(data), name)


def _read_npy(f, size: int, name: str) -> np.ndarray:
    try:
        _check_header(f, size, name)
        f.seek(0)
        return np.load(f, allow_pickle=False)
    except DsnetError:
        raise
    except _READ_ERRORS as exc:
        raise DsnetError(f"{name}: not a readable .npy ({_reason(exc)})") from None


def _load_archive(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, by name; each member's header is checked against the member's size (and a
    compressed member's size against what deflate can produce) before its array is allocated."""
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                where = f"{path}:{key}"
                if not info.filename.endswith(".npy"):
                    raise DsnetError(f"{where}: not an array (an .npz holds .npy members only)")
                if info.compress_type != zipfile.ZIP_STORED and \
                        info.file_size > _MAX_DEFLATE_RATIO * max(info.compress_size, 1):
                    raise DsnetError(f"{where}: claims {info.file_size} bytes from {info.compress_size} compressed "
                                     f"bytes, more than compression can give")
                with archive.open(info) as member:
                    _check_header(member, info.file_size, where)
                with archive.open(info) as member:
                    arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
    except DsnetError:
        raise
    except _READ_ERRORS as exc:
        raise DsnetError(f"{path}: not a readable .npz ({_reason(exc)})") from None
    if not arrays:
        raise DsnetError(f"{path}: not a readable .npz (it holds no arrays)")
    return arrays


def _check_header(f, size: int, name: str) -> None:
    """The ``.npy`` header at the start of ``f`` (``size`` bytes in all): a floating-point array whose data fits in
    the file, else ``DsnetError``; nothing of the array's size is allocated."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise DsnetError(f"{name}: .npy format version {version[0]}.{version[1]} is not supported (1.0 or 2.0)")
    if dtype.kind != "f":
        raise DsnetError(f"{name}: arrays must hold preprocessed floating-point values, got {dtype}")
    if any(n < 0 for n in shape):
        raise DsnetError(f"{name}: the header's shape {list(shape)!s:.80} has a negative dimension")
    need = math.prod(shape) * dtype.itemsize
    have = size - f.tell()
    if need > have:
        raise DsnetError(f"{name}: the header says {list(shape)!s:.80} {dtype} ({need} bytes of data) but the file "
                         f"holds {max(have, 0)} bytes after it (truncated or corrupt)")


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _as_batch(array: np.ndarray, name: str) -> np.ndarray:
    """[C,H,W] or [N,C,H,W] floating point -> float32 [N,C,H,W]; the dispatcher checks the rest."""
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
        raise DsnetError(f"{name}: arrays must hold preprocessed floating-point values, got "
                         f"{getattr(array, 'dtype', type(array).__name__)}")
    if array.ndim not in (3, 4):
        raise DsnetError(f"{name}: arrays must be one sample [C, H, W] or a batch [N, C, H, W], got shape "
                         f"{list(array.shape)}")
    if array.ndim == 3:
        array = array[None]
    return np.ascontiguousarray(array, dtype=np.float32)
