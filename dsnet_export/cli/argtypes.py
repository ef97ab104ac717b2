"""argparse ``type=`` functions the commands share.

They run while the arguments are parsed, so a bad value is one ``error: argument --x: ...`` line
before any work starts, and an output path that cannot be written fails before the work whose
result it would hold, not after it.  Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path


def _int(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:  # also more than Python's 4300 digits
        raise argparse.ArgumentTypeError(f"expected an integer, got {str(text)[:40]!r}") from None


def _float(text: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {str(text)[:40]!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _int_at_least(text: str, low: int, unit: str = "", hint: str = "") -> int:
    value = _int(text)
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}{unit}, got {value}{hint}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, counts, thread counts)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _int_at_least(text, 0)


#: More threads per session than any machine has cores: a typo, refused before ONNX Runtime tries to start them.
MAX_THREADS = 1024


def thread_count(text: str) -> int:
    """Threads per session: 1 .. ``MAX_THREADS`` (leave the option out for the runtime's own default)."""
    value = _int_at_least(text, 1, " thread", " (leave --threads out for ONNX Runtime's default)")
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_THREADS} threads, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text!r}")
    return value


def check_output_file(text: str, *, create_folder: bool = False) -> Path:
    """``text`` as a file that can be written: not a directory, in an existing folder (unless
    ``create_folder``: then every existing part of the folder path must be a folder)."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError("expected a file path, got an empty string")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a directory; give a file name inside it")
    folder = path.parent
    if folder.exists():
        if not folder.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: {folder} is not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{text}: cannot write in {folder} (permission denied)")
    elif create_folder:
        existing = next((p for p in folder.parents if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: {existing} is not a folder")
    else:
        raise argparse.ArgumentTypeError(f"{text}: folder {folder} does not exist (create it first)")
    return path


def output_file(text: str) -> str:
    """A file to write, in an existing folder, that is not a directory."""
    check_output_file(text)
    return text


def output_file_or_stdout(text: str) -> str:
    """As ``output_file``, or '-' for standard output."""
    return text if text == "-" else output_file(text)


def output_path(text: str) -> Path:
    """As ``output_file``, as a ``Path``."""
    return check_output_file(text)


def output_dir(text: str) -> str:
    """A bundle directory to create or replace: not a file, not a folder that is not a bundle."""
    from ..errors import DsnetError
    from ..export.atomic import check_replaceable

    if not str(text).strip():
        raise argparse.ArgumentTypeError("expected a directory path, got an empty string")
    try:
        check_replaceable(Path(text))
    except DsnetError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    existing = next((p for p in Path(text).parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {existing} is not a folder")
    return text


def port_number(text: str) -> int:
    """A TCP port, 1..65535."""
    value = _int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, got {value}")
    return value
