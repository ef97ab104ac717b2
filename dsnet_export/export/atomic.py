"""Build a directory next to its target and swap it in only when complete.

A failed or interrupted build leaves the previous bundle untouched; a directory that is not
a dsnet-export bundle is never replaced (``--out ~`` must not wipe a home directory).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import DsnetError
from ..runtime.manifest import MANIFEST_NAME


def check_replaceable(target: Path) -> None:
    """Refuse early when ``target`` exists and is not an (earlier) bundle or an empty directory."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise DsnetError(f"{target}: exists and is not a directory; choose another directory")
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST_NAME).is_file():
        raise DsnetError(f"{target}: exists, is not empty and is not a dsnet-export bundle; refusing to replace it")


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``target``; on success it becomes ``target``."""
    target = Path(target)
    check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield tmp
        check_replaceable(target)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, target: Path) -> None:
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a bundle is an ordinary directory
    if not target.exists():
        os.rename(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, old / "bundle")
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old / "bundle", target)  # put the previous bundle back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
