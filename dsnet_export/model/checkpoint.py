"""Loading and saving supernet checkpoints, safely.

Two formats are read:

* official DS-Net files (``.pth.tar``: ``{'state_dict', 'arch', 'args', ...}``, or a bare state
  dict), opened with ``torch.load(weights_only=True)`` so pickled code is refused, never run;
  the only class allowed beyond tensors is ``argparse.Namespace`` (the official saver stores
  its command-line ``args``);
* the project's own format: one safetensors file whose metadata carries the arch spec as JSON.

Loading is strict by default and reports every missing, unexpected and mis-shaped key at once.
The first bytes are looked at before any loader sees the file, so an image, a JSON file or random
bytes are named as what they are instead of failing deep inside a loader.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ..arch import ArchSpec, get_arch, list_archs
from ..errors import CheckpointError, DsnetError, SpecError
from ..files import atomic_file
from .supernet import Supernet

FORMAT = "dsnet-export/supernet"
FORMAT_VERSION = "1"
_LIST_LIMIT = 8


def load_supernet(path: str | os.PathLike, arch: str | ArchSpec | None = None, *, strict: bool = True,
                  ema: bool = False, device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> Supernet:
    """Load a checkpoint into a ``Supernet`` in eval mode.

    ``arch`` (a registered name, an official name or a spec) is checked against the
    architecture the file declares; for a bare state dict without ``arch`` the registered
    architecture whose keys and shapes match exactly is used.  ``ema=True`` takes an official
    checkpoint's ``state_dict_ema``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if sniff_checkpoint(path) == "safetensors":
        state, declared = _read_safetensors(path)
    else:
        state, declared = _read_torch(path, ema)
    spec = _choose_spec(path, arch, declared, state)
    model = Supernet(spec, device=device, dtype=dtype)
    _check_keys(path, spec, model.state_dict(), state, strict)
    model.load_state_dict(state, strict=strict)
    return model.eval()


def save_supernet(model: Supernet, path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``model`` as safetensors + spec JSON, atomically (temp file, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch_spec": json.dumps(model.spec.to_dict())}
    meta.update(metadata or {})
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a project-format checkpoint (spec JSON, training notes)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def training_data(path: str | os.PathLike) -> dict:
    """What a project checkpoint records about its training data (dataset, split seed, class names,
    preprocessing); {} for checkpoints made elsewhere (official .pth.tar, bare state dicts)."""
    try:
        info = json.loads(read_metadata(path).get("training", "{}"))
    except Exception:  # noqa: BLE001 - not a safetensors file, or metadata that is not ours
        return {}
    data = info.get("data") if isinstance(info, dict) else None
    return data if isinstance(data, dict) else {}


# -- reading -----------------------------------------------------------------------------
_SNIFF_BYTES = 512
_SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors format's own limit
_PICKLE_PROTOCOLS = range(2, 6)


def sniff_checkpoint(path: str | os.PathLike) -> str:
    """What the file's first bytes say it is: ``"safetensors"`` (8-byte little-endian header length,
    then a JSON object), ``"torch-zip"`` (PK\\x03\\x04 with a pickle inside, torch >= 1.6) or
    ``"torch-pickle"`` (the legacy format: pickle protocol 2..5).  Anything else is a CheckpointError
    saying what the file is (an image, JSON, text, an archive) or that its bytes are unrecognised."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not head:
        raise CheckpointError(f"{path}: is empty, not a checkpoint")
    if len(head) >= 9 and head[8:9] == b"{":
        header = int.from_bytes(head[:8], "little")
        if 2 <= header <= size - 8:
            return "safetensors"
        if header <= _SAFETENSORS_MAX_HEADER:
            raise CheckpointError(f"{path}: is a truncated safetensors file (its header alone needs "
                                  f"{header + 8} bytes, the file has {size}); copy or download it again")
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            raise CheckpointError(f"{path}: is a damaged or truncated zip archive (PyTorch checkpoints are zip "
                                  f"archives; copy or download it again)") from None
        if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            npz = bool(names) and all(n.endswith(".npy") for n in names)
            raise CheckpointError(f"{path}: is {'a NumPy .npz archive' if npz else 'a zip archive'}, not a "
                                  f"checkpoint (a PyTorch checkpoint is a zip archive with a data.pkl inside)")
        return "torch-zip"
    if head[0] == 0x80 and len(head) > 1 and head[1] in _PICKLE_PROTOCOLS:
        return "torch-pickle"
    raise CheckpointError(f"{path}: {_describe(head)}")


def _describe(head: bytes) -> str:
    """Name a file that is not a checkpoint from its first bytes."""
    kinds = [(b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
             (b"\x93NUMPY", "a NumPy .npy array file"), (b"\x1f\x8b", "gzip-compressed data"),
             (b"%PDF", "a PDF document"), (b"\x7fELF", "an executable (ELF)")]
    for magic, kind in kinds:
        if head.startswith(magic):
            return f"is {kind}, not a checkpoint"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "is a WebP image, not a checkpoint"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "is a tar archive, not a checkpoint (official DS-Net .pth.tar files are not tar archives; unpack it)"
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False).lstrip("\ufeff")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip() and all(c.isprintable() or c in "\t\r\n" for c in text):
        start = text.lstrip()
        if start[:1] in ("{", "["):
            return "is JSON text, not a checkpoint"
        if start[:1] == "<" and re.match(r"<(!doctype html|html)", start, re.IGNORECASE):
            return "is an HTML page, not a checkpoint (a failed download?)"
        return "is a text file, not a checkpoint"
    return "is not a PyTorch or safetensors checkpoint (unrecognised bytes)"


def _torch_error(exc: BaseException) -> str:
    """One line from a torch.load error: the unpickler's own reason when it gives one (never torch's
    advice to load unsafely)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    match = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    line = match.group(1) if match else next((t.strip() for t in text.splitlines() if t.strip()), "")
    line = re.split(r"(?<=\.) ", line, maxsplit=1)[0].rstrip(".")
    if "weights_only" in line or "safe_globals" in line or not line:
        return type(exc).__name__
    return f"{type(exc).__name__}: {line}" if not match else line


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], ArchSpec | None]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - the Rust reader can raise other types on a malformed file
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    if "arch_spec" not in meta:
        return state, None
    try:
        return state, ArchSpec.from_dict(json.loads(meta["arch_spec"]), where=f"{path}: arch_spec")
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: arch_spec metadata is not JSON ({exc})") from None
    except SpecError as exc:
        raise CheckpointError(str(exc)) from None


def _read_torch(path: Path, ema: bool) -> tuple[dict[str, torch.Tensor], ArchSpec | str | None]:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found is None:  # no foreign class or function named: a damaged pickle, or one a safe load refuses
            raise CheckpointError(f"{path}: refused to load: its pickle is truncated, corrupt or uses operations "
                                  f"beyond tensors and plain containers ({_torch_error(exc)}). Only load files you "
                                  f"trust; re-save the state dict alone with torch.save to convert it.") from None
        raise CheckpointError(
            f"{path}: refused to load: the file's pickle asks for {found.group(1)}, an object beyond tensors "
            f"and plain containers, and unpickling it could run code. Only load files you trust; re-save the "
            f"state dict alone to convert it.") from None
    except Exception as exc:  # noqa: BLE001 - torch.load on garbage raises almost anything
        raise CheckpointError(f"{path}: not a readable torch checkpoint, truncated or corrupt "
                              f"({_torch_error(exc)})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict or a dict with 'state_dict', got {type(obj).__name__}")
    key = "state_dict_ema" if ema else "state_dict"
    if key in obj:
        state, declared = obj[key], obj.get("arch")
    elif ema:
        raise CheckpointError(f"{path}: has no 'state_dict_ema' (was it trained with model EMA?)")
    else:
        state, declared = obj, None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: '{key}' is not a mapping of names to tensors")
    if declared is not None and not isinstance(declared, str):
        raise CheckpointError(f"{path}: 'arch' must be a string, got {type(declared).__name__}")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    return state, declared


# -- matching a file to an architecture -------------------------------------------------
def _choose_spec(path: Path, arch: str | ArchSpec | None, declared: ArchSpec | str | None,
                 state: Mapping[str, torch.Tensor]) -> ArchSpec:
    requested = _as_spec(arch) if arch is not None else None
    found = None
    if isinstance(declared, ArchSpec):
        found = declared
    elif isinstance(declared, str):
        try:
            found = get_arch(declared)
        except DsnetError:
            if requested is None:
                raise CheckpointError(f"{path}: declares architecture {declared!r}, which is not registered "
                                      f"({', '.join(list_archs())}); pass arch= to load it as one of those") from None
    if requested is not None and found is not None and not _same_arch(requested, found):
        raise CheckpointError(f"{path}: checkpoint is for architecture {found.name!r}, "
                              f"but {requested.name!r} was asked for")
    if requested is not None or found is not None:
        return requested or found
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    matches = [name for name in list_archs() if _expected_shapes(get_arch(name)) == shapes]
    if len(matches) == 1:
        return get_arch(matches[0])
    raise CheckpointError(f"{path}: the file does not name its architecture and its keys match "
                          f"{'none' if not matches else ' and '.join(matches)} of the registered ones; "
                          f"pass arch= (one of {', '.join(list_archs())})")


def _as_spec(arch: str | ArchSpec) -> ArchSpec:
    if isinstance(arch, ArchSpec):
        return arch
    try:
        return get_arch(arch)
    except DsnetError as exc:
        raise CheckpointError(str(exc)) from None


def _same_arch(a: ArchSpec, b: ArchSpec) -> bool:
    ignored = ("name", "official_name", "input")
    return all(v == b.to_dict()[k] for k, v in a.to_dict().items() if k not in ignored)


def _expected_shapes(spec: ArchSpec) -> dict[str, tuple[int, ...]]:
    model = Supernet(spec, device="meta")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _check_keys(path: Path, spec: ArchSpec, expected: Mapping[str, torch.Tensor],
                state: Mapping[str, torch.Tensor], strict: bool) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f"{k} (file {list(state[k].shape)}, model {list(expected[k].shape)})"
                 for k in expected if k in state and state[k].shape != expected[k].shape]
    wrong_kind = [f"{k} ({state[k].dtype})" for k in expected if k in state
                  and expected[k].is_floating_point() and not state[k].is_floating_point()]
    problems = []
    if missing and strict:
        problems.append(_listing("missing", missing))
    if unexpected and strict:
        problems.append(_listing("unexpected", unexpected))
    if misshaped:
        problems.append(_listing("mis-shaped", misshaped))
    if wrong_kind:
        problems.append(_listing("not floating point", wrong_kind))
    if problems:
        raise CheckpointError(f"{path}: does not fit architecture {spec.name!r}:\n  " + "\n  ".join(problems))


def _listing(label: str, items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    more = f", ... and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else ""
    return f"{label} keys ({len(items)}): {shown}{more}"
