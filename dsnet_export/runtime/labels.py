"""Class names for printing: a text file with one name per line, or the class indices."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DsnetError


def load_labels(path: str | os.PathLike | None, num_classes: int) -> list[str]:
    if path is None:
        return [str(i) for i in range(num_classes)]
    try:
        names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DsnetError(f"{path}: cannot read labels ({exc})") from None
    if len(names) != num_classes:
        raise DsnetError(f"{path}: {len(names)} labels for a model with {num_classes} classes")
    return names


def bundle_labels(manifest, path: str | os.PathLike | None = None) -> list[str]:
    """Class names for a bundle: from ``path`` if given, else the names the manifest records (training on
    a folder records them), else the class indices as text."""
    num_classes = int(manifest.arch["num_classes"])
    if path is None and manifest.labels:
        return list(manifest.labels)
    return load_labels(path, num_classes)
