"""Decode an image file the same way everywhere.

EXIF orientation is applied (cameras store portrait photos sideways), 16-bit and float images are
scaled to 8 bits instead of clipped, alpha is dropped (the colour underneath is kept, as OpenCV does),
palette and CMYK images are converted.  Images over Pillow's pixel limit are refused with a message,
not decoded: a small file can claim billions of pixels.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import DsnetError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"})

_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Every image file under ``folder`` (recursively), sorted, hidden files skipped."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def decode_image(source, channels: int = 3):
    """A path, file object or PIL image -> a PIL image in mode ``RGB`` (3 channels) or ``L`` (1)."""
    from PIL import Image, ImageOps

    if channels not in (1, 3):
        raise DsnetError(f"images can be decoded to 1 or 3 channels, not {channels}")
    if not isinstance(source, Image.Image):
        name = source if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "image")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(source) as opened:
                    opened.load()
                    image = opened
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise DsnetError(f"{name}: refused, too many pixels for an image ({exc}); resize it first") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise DsnetError(f"{name}: not a readable image ({exc})") from None
        source = image
    image = ImageOps.exif_transpose(source)
    return _to_mode(image, "RGB" if channels == 3 else "L")


def _to_mode(image, mode: str):
    from PIL import Image

    if image.mode in _SIXTEEN_BIT:
        # 16-bit grey (PNG, TIFF): Pillow's own conversion clips at 255; scale instead.
        scaled = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0  # float images in [0, 1] or [0, 255]
        image = Image.fromarray(np.clip(np.round(np.nan_to_num(values) * scale), 0, 255).astype(np.uint8), "L")
    elif image.mode in ("P", "PA"):
        image = image.convert("RGBA")  # a palette may carry transparency; RGBA -> RGB below drops it
    if image.mode == mode:
        return image
    if image.mode in ("LA", "La") and mode == "RGB":
        image = image.convert("L")
    return image.convert(mode)
