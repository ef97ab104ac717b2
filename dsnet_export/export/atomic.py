"""Build a directory next to its target and swap it in only when complete, crash-safely.

Guarantees (``tests/export/test_atomic.py`` and ``test_swap_faults.py`` kill builds at every step):

* Only a directory whose ``manifest.json`` parses as this project's manifest (or an empty one) is ever
  replaced; anything else is refused with a ``DsnetError`` naming it, before anything is written.
* At every instant ``target`` is the previous bundle or the new one.  The swap is one
  ``renameat2(RENAME_EXCHANGE)`` (Linux >= 3.15 on ext4, xfs, btrfs, tmpfs, ...).  Where the kernel or
  file system lacks it, a two-step swap moves the previous bundle into this build's work directory first;
  a kill between the two renames leaves ``target`` absent for the next build to restore (and says so).
* Builds of one target are serialised by ``flock`` on ``.<name>.lock`` beside it (a second build waits,
  saying so); the lock file is removed when the build ends.
* Every build works in ``.<name>.partial-XXXXXXXX/`` beside the target, holding ``MARKER`` (written first,
  removed last) and ``bundle/`` (the new bundle; after an exchange, the previous one).  The next build of
  the same target, holding the lock, removes these work directories left by killed builds -- only those
  that match the name pattern *and* hold the marker (or are empty), so nothing a user made is deleted --
  and warns once with what it did.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import DsnetError
from ..records import strict_json_loads
from ..runtime.manifest import MANIFEST_NAME, parse_manifest

#: First file written into each work directory, last one removed: what makes it removable.
MARKER = ".dsnet-export-work"
_MARKER_TEXT = b"dsnet-export: work directory of a build; removed by the next build of the same target\n"
_NEW = "bundle"  # the bundle being built (after an exchange: the previous bundle, to delete)
_OLD = "previous"  # the previous bundle, moved aside by the two-step swap only


class BuildLockedError(DsnetError):
    """Another process holds the build lock of the target (only with ``wait=False``)."""


#: Why a non-empty directory is not a product of this kind (None: it is, and may be replaced).
NotOurs = Callable[[Path], "str | None"]


def check_replaceable(target: Path, not_ours: NotOurs | None = None, what: str = "a dsnet-export bundle") -> None:
    """Refuse early when ``target`` exists and is neither empty nor ``what``: ``not_ours(target)`` says why it is
    not (default: a bundle, a directory whose ``manifest.json`` parses as this project's manifest; files and
    hashes are not checked, so a damaged bundle can still be rebuilt)."""
    target = Path(target)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise DsnetError(f"{target}: exists and is not a directory; choose another directory")
    if not target.is_dir() or not any(target.iterdir()):
        return
    reason = (not_ours or _not_a_bundle)(target)
    if reason is not None:
        raise DsnetError(f"{target}: exists, is not empty and is not {what}; refusing to replace it ({reason})")


def _not_a_bundle(target: Path) -> str | None:
    path = target / MANIFEST_NAME
    if path.is_symlink() or not path.is_file():
        return f"no {MANIFEST_NAME}"
    try:
        parse_manifest(strict_json_loads(path.read_bytes()), str(path))
    except (OSError, ValueError, DsnetError) as exc:  # JSON/Unicode decode errors are ValueErrors
        return f"its {MANIFEST_NAME} is not a dsnet-export manifest: {str(exc)[:200]}"
    return None


@contextmanager
def atomic_directory(target: Path, *, wait: bool = True, not_ours: NotOurs | None = None,
                     what: str = "a dsnet-export bundle") -> Iterator[Path]:
    """Yield a fresh directory beside ``target`` to build in; on success it becomes ``target``.

    ``target`` may be replaced only when empty or ``what`` (``check_replaceable``).
    Holds the target's build lock throughout (``wait=False``: raise ``BuildLockedError`` instead of
    waiting).  On any failure, an interrupt included, the work directory is removed and ``target`` is
    left as it was; a killed build's leftovers are removed by the next build of the same target."""
    target = Path(target)
    check_replaceable(target, not_ours, what)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target, wait):
        recover(target)
        check_replaceable(target, not_ours, what)  # again, under the lock
        work = Path(tempfile.mkdtemp(prefix=_work_prefix(target), dir=target.parent))
        try:
            _write_marker(work)
            os.mkdir(work / _NEW, 0o755)
            yield work / _NEW
            check_replaceable(target, not_ours, what)
            _fsync_tree(work / _NEW)
            _swap_in(work, target)
        except BaseException:
            if not ((work / _OLD).is_dir() and not os.path.lexists(target)):  # else: recover() puts it back
                _remove_work(work)
            raise
        else:
            try:
                _remove_work(work)
            except OSError as exc:  # the new bundle is in place; only the previous one is left to delete
                warnings.warn(f"{target}: could not remove {work.name} ({exc}); the next build of {target.name} "
                              f"removes it", UserWarning, stacklevel=3)
        finally:
            _fsync_dir(target.parent)


def recover(target: Path) -> list[str]:
    """Finish what killed builds of ``target`` left: put back a previous bundle a two-step swap had moved
    aside (when ``target`` is missing), then remove their work directories.  Call with the lock held.
    Returns one line per action, also given as one warning."""
    target = Path(target)
    done: list[str] = []
    try:
        entries = sorted(target.parent.iterdir())
    except FileNotFoundError:
        return done
    for work in entries:
        if not _is_work_dir(target, work):
            continue
        if not _is_ours(work):
            continue
        old = work / _OLD
        if old.is_dir() and not old.is_symlink() and not os.path.lexists(target):
            os.rename(old, target)
            done.append(f"restored the previous bundle from an interrupted build ({work.name})")
        _remove_work(work)
        done.append(f"removed {work.name}, left by an interrupted build")
    if done:
        warnings.warn(f"{target}: {'; '.join(done)}", UserWarning, stacklevel=3)
    return done


def stranded_bundle(target: Path) -> Path | None:
    """The previous bundle of ``target`` that a build killed mid-swap left in its work directory, when
    ``target`` itself is missing (the two-step swap only); ``None`` otherwise.  Read-only: the next
    ``build`` of ``target`` puts it back."""
    target = Path(target)
    if os.path.lexists(target) or not target.parent.is_dir():
        return None
    for work in sorted(target.parent.iterdir()):
        old = work / _OLD
        if _is_work_dir(target, work) and _is_ours(work) and old.is_dir() and not old.is_symlink():
            return old
    return None


# --- names and markers -------------------------------------------------------------------------------


def _work_prefix(target: Path) -> str:
    return f".{target.name}.partial-"


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def _is_work_dir(target: Path, path: Path) -> bool:
    """Named like one of ``target``'s work directories (``tempfile.mkdtemp`` suffixes), and a real directory."""
    prefix = _work_prefix(target)
    return (path.name.startswith(prefix) and re.fullmatch(r"[A-Za-z0-9_]{4,16}", path.name[len(prefix):]) is not None
            and path.is_dir() and not path.is_symlink())


def _write_marker(work: Path) -> None:
    fd = os.open(work / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, _MARKER_TEXT)
    finally:
        os.close(fd)


def _is_ours(work: Path) -> bool:
    """Holds the marker (or, killed while writing it, a start of it and nothing else), or is empty."""
    try:
        names = os.listdir(work)
        if not names:
            return True  # an empty directory holds nothing of anyone's
        marker = work / MARKER
        if MARKER not in names or marker.is_symlink() or not marker.is_file():
            return False
        text = marker.read_bytes()
    except OSError:
        return False
    return text == _MARKER_TEXT or (names == [MARKER] and _MARKER_TEXT.startswith(text))


def _remove_work(work: Path) -> None:
    """Remove a work directory: everything but the marker, then the marker, then the (empty) directory,
    so a kill part-way leaves it still recognisable (marker present, or empty)."""
    if not work.is_dir() or work.is_symlink():
        return
    for entry in work.iterdir():
        if entry.name == MARKER:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            os.unlink(entry)
    if os.path.lexists(work / MARKER):
        os.unlink(work / MARKER)
    os.rmdir(work)


# --- the lock ----------------------------------------------------------------------------------------


@contextmanager
def _build_lock(target: Path, wait: bool) -> Iterator[None]:
    """``flock`` on ``.<name>.lock``; the holder unlinks it before unlocking, so a waiter that then gets
    the lock on the unlinked file sees the name point elsewhere (or nowhere) and retries."""
    path = _lock_path(target)
    warned = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(fd)
                if not wait:
                    raise BuildLockedError(f"{target}: another build of it is in progress{holder} "
                                           f"(lock {path.name}); try again when it ends") from None
                if not warned:
                    warnings.warn(f"{target}: waiting for another build of it to end{holder}", UserWarning,
                                  stacklevel=4)
                    warned = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        try:
            os.unlink(path)
        finally:
            os.close(fd)


def _lock_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (process {pid})" if pid.isdigit() else ""


# --- the swap ----------------------------------------------------------------------------------------

_RENAME_NOREPLACE, _RENAME_EXCHANGE, _AT_FDCWD = 1, 2, -100
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}
_libc_renameat2 = None


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2``; False when the kernel, C library or file system does not support ``flags``."""
    global _libc_renameat2
    if _libc_renameat2 is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
        except (AttributeError, OSError):
            fn = False
        else:
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
        _libc_renameat2 = fn
    if not _libc_renameat2:
        return False
    if _libc_renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(src), None, str(dst))


def _swap_in(work: Path, target: Path) -> None:
    """Make ``work/bundle`` the target.  With an existing target: one atomic exchange (the previous
    bundle lands in ``work/bundle``), else move it to ``work/previous`` and then the new one in."""
    new = work / _NEW
    if not os.path.lexists(target):
        if not _renameat2(new, target, _RENAME_NOREPLACE):
            os.rename(new, target)
        return
    if _renameat2(new, target, _RENAME_EXCHANGE):
        return
    os.rename(target, work / _OLD)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(work / _OLD, target)  # put the previous bundle back
        raise


def _fsync_tree(root: Path) -> None:
    """The new bundle's data reaches the disk before a name points at it."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
