"""Adding files to an existing bundle (TensorRT plans, converted formats) the way a bundle is built: a complete
new directory (the unchanged files hard-linked), checked by the runtime's own loader, swapped in at the end."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from ..runtime.bundle import load_bundle, sha256_file
from ..runtime.manifest import MANIFEST_NAME, FileEntry, Manifest, write_manifest
from .atomic import atomic_directory


def rewrite_bundle(root: Path, manifest: Manifest, new_files: Mapping[str, bytes], dropped: set[str],
                   record: Callable[[dict[str, FileEntry]], Manifest]) -> Manifest:
    """Write ``new_files`` (bundle-relative path -> bytes) into the bundle at ``root``, leave out ``dropped``,
    and record them: ``record(files)`` gets the new ``files`` table and returns the manifest to write."""
    root = Path(root)
    with atomic_directory(root) as tmp:
        for path in root.rglob("*"):
            rel = path.relative_to(root).as_posix()
            if path.is_dir() or rel == MANIFEST_NAME or rel in dropped or rel in new_files:
                continue
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(path, tmp / rel)
        for rel, data in new_files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        files = {k: v for k, v in manifest.files.items() if k not in dropped}
        files.update({rel: FileEntry(size=(tmp / rel).stat().st_size, sha256=sha256_file(tmp / rel))
                      for rel in new_files})
        updated = record(files)
        write_manifest(tmp, updated)
        load_bundle(tmp)  # the runtime's own reading of the result
    return updated


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
