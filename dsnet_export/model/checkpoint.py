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

Nothing a file declares is trusted before it is checked against the file itself: the spec must pass
``ArchSpec`` validation (sane limits), its largest route must fit in the values the file holds, and
the shapes it implies (a ``device="meta"`` model, which allocates nothing) must match the file's
tensors, all before a safetensors tensor is read or the model is allocated.  Whatever a file holds,
loading returns a model or raises ``CheckpointError``.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import json
import math
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ..arch import (
    ArchSpec,
    block_family,
    conv_output_size,
    get_arch,
    iter_blocks,
    largest_route,
    list_archs,
    route_cost,
)
from ..errors import CheckpointError, DsnetError, SpecError
from ..files import atomic_file
from ..records import strict_json_loads
from .supernet import Supernet
from .torchvision_import import from_torchvision_resnet, looks_like_torchvision_resnet

FORMAT = "dsnet-export/supernet"
FORMAT_VERSION = "1"
_LIST_LIMIT = 8
#: Longest ``arch_spec`` metadata read (a real spec is ~2 KB of JSON).
_SPEC_JSON_LIMIT = 1_000_000
#: Values a non-strict load may leave to the model's initialisation (keys missing from the file); beyond
#: that, the spec describes a model much bigger than the file and is refused before anything is allocated.
_MISSING_LIMIT = 1 << 24


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
    with _open_checkpoint(path, ema) as contents:
        if looks_like_torchvision_resnet(contents.entries):
            spec, state = _torchvision_state(path, arch, contents)
        else:
            spec = _choose_spec(path, arch, contents.declared, contents.entries)
            _check_fits(path, spec, contents.entries, strict)
            state = contents.read()
    model = Supernet(spec, device=device, dtype=dtype)
    try:
        model.load_state_dict(state, strict=strict)
    except (RuntimeError, TypeError, ValueError) as exc:  # a tensor torch cannot copy (sparse, quantised, ...)
        raise CheckpointError(f"{path}: its tensors cannot be copied into the model ({_torch_error(exc)})") from None
    return model.eval()


def _torchvision_state(path: Path, arch: str | ArchSpec | None, contents: _Contents
                       ) -> tuple[ArchSpec, dict[str, torch.Tensor]]:
    """A torchvision ResNet state dict as a full supernet state for ``arch`` (its tensors fill the prefixes of
    the route with torchvision's widths; ``torchvision_import``)."""
    if arch is None:
        raise CheckpointError(f"{path}: torchvision ResNet weights; pass arch= to import them into "
                              f"(ds_resnet50 for resnet50, ds_resnet18 for resnet18)")
    spec = _as_spec(arch)
    cost = route_cost(spec, "largest")
    held = sum(e.numel for e in contents.entries.values())
    if held > cost.params + cost.buffers + _MISSING_LIMIT:  # before anything is read
        raise CheckpointError(f"{path}: holds {held:,} values, more than {spec.name!r} has ({cost.params:,} "
                              f"parameters): not weights of this architecture")
    try:
        return spec, from_torchvision_resnet(contents.read(), spec)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


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

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, or another type on a malformed file
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None


def training_data(path: str | os.PathLike) -> dict:
    """What a project checkpoint records about its training data (dataset, split seed, class names,
    preprocessing); {} for checkpoints made elsewhere (official .pth.tar, bare state dicts)."""
    try:
        info = strict_json_loads(read_metadata(path).get("training", "{}"))
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


@dataclass(frozen=True)
class _Entry:
    """One tensor as the file declares it, before (safetensors) or after (torch) it is read."""

    shape: tuple[int, ...]
    floating: bool
    dtype: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class _Contents:
    """What a checkpoint holds: its tensors' shapes, the architecture it declares, and how to read them."""

    entries: dict[str, _Entry]
    declared: ArchSpec | str | None
    read: Callable[[], dict[str, torch.Tensor]]


@contextlib.contextmanager
def _open_checkpoint(path: Path, ema: bool) -> Iterator[_Contents]:
    if sniff_checkpoint(path) == "safetensors":
        with _open_safetensors(path) as contents:
            yield contents
    else:
        state, declared = _read_torch(path, ema)
        entries = {k: _Entry(tuple(v.shape), v.is_floating_point(), str(v.dtype).removeprefix("torch."))
                   for k, v in state.items()}
        yield _Contents(entries, declared, lambda: state)


_SAFETENSORS_FLOATS = ("F64", "F32", "F16", "BF16")


def _safetensors_failure(path: Path, exc: BaseException) -> CheckpointError:
    text = str(exc) if type(exc).__name__ == "SafetensorError" else f"{type(exc).__name__}: {exc}"
    return CheckpointError(f"{path}: not a readable safetensors file ({text[:300]})")


@contextlib.contextmanager
def _open_safetensors(path: Path) -> Iterator[_Contents]:
    """The header (shapes, dtypes, metadata) now; the tensors only when ``read`` is called, after the checks."""
    from safetensors import safe_open

    try:
        handle = safe_open(str(path), framework="pt")
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError; the Rust reader can raise other types
        raise _safetensors_failure(path, exc) from None
    with handle as f:
        try:
            meta = f.metadata() or {}
            entries = {}
            for key in f.keys():
                part = f.get_slice(key)
                dtype = str(part.get_dtype())
                entries[key] = _Entry(tuple(int(n) for n in part.get_shape()),
                                      dtype in _SAFETENSORS_FLOATS or dtype.startswith("F8"), dtype)
        except Exception as exc:  # noqa: BLE001
            raise _safetensors_failure(path, exc) from None

        def read() -> dict[str, torch.Tensor]:
            try:
                state = {k: f.get_tensor(k) for k in entries}
            except Exception as exc:  # noqa: BLE001 - e.g. a dtype this torch does not have
                raise _safetensors_failure(path, exc) from None
            changed = [k for k, v in state.items() if tuple(v.shape) != entries[k].shape]
            if changed:  # the Rust reader checked offsets against the shapes; this only guards the reader
                raise CheckpointError(f"{path}: tensor {changed[0]} does not have the shape its header declares")
            return state

        yield _Contents(entries, _declared_spec(path, meta), read)


def _declared_spec(path: Path, meta: Mapping[str, str]) -> ArchSpec | None:
    """The spec in the ``arch_spec`` metadata, parsed and validated (limits included), or None."""
    if "arch_spec" not in meta:
        return None
    text = meta["arch_spec"]
    if len(text) > _SPEC_JSON_LIMIT:
        raise CheckpointError(f"{path}: arch_spec metadata is {len(text):,} characters; a spec is a few KB "
                              f"(at most {_SPEC_JSON_LIMIT:,})")
    try:
        data = json.loads(text)  # NaN, inf and huge integers parse, so the spec check can name their field
    except RecursionError:
        raise CheckpointError(f"{path}: arch_spec metadata is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer literal beyond Python's conversion limit
        raise CheckpointError(f"{path}: arch_spec metadata is not JSON ({str(exc)[:200]})") from None
    try:
        return ArchSpec.from_dict(data, where=f"{path}: arch_spec")
    except SpecError as exc:  # field errors name the file; limits and consistency checks name the spec
        text = str(exc)
        raise CheckpointError(text if text.startswith(str(path)) else f"{path}: arch_spec: {text}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: arch_spec metadata is nested too deeply") from None


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
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in state.items()):
        raise CheckpointError(f"{path}: '{key}' is not a mapping of names to tensors")
    if declared is not None and not isinstance(declared, str):
        raise CheckpointError(f"{path}: 'arch' must be a string, got {type(declared).__name__}")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    return state, declared


# -- matching a file to an architecture -------------------------------------------------
def _choose_spec(path: Path, arch: str | ArchSpec | None, declared: ArchSpec | str | None,
                 entries: Mapping[str, _Entry]) -> ArchSpec:
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
    shapes = {k: e.shape for k, e in entries.items()}
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
    return {k: e.shape for k, e in _expected(spec).items()}


def _expected(spec: ArchSpec) -> dict[str, _Entry]:
    """The model's state as shapes: a ``device="meta"`` model allocates no storage."""
    model = Supernet(spec, device="meta")
    return {k: _Entry(tuple(v.shape), v.is_floating_point(), str(v.dtype).removeprefix("torch."))
            for k, v in model.state_dict().items()}


def _spec_field(key: str, spec: ArchSpec) -> str:
    """The spec fields that decide the shape of state-dict entry ``key``."""
    found = re.match(r"blocks\.(\d+)\.", key)
    if found and int(found.group(1)) < len(spec.stages):
        i = int(found.group(1))
        where = f"stages[{i}] (channels, layers, kernel, se_ratio)"
        return f"{where}, gate" if ".gate" in key else where
    if key.startswith(("conv_stem.", "bn1.")):
        return "stem (channels, kernel) or input.channels"
    if key.startswith("classifier."):
        return f"num_classes or stages[{len(spec.stages) - 1}].channels"
    return "stages"


def _check_fits(path: Path, spec: ArchSpec, entries: Mapping[str, _Entry], strict: bool) -> None:
    """Refuse a spec that does not describe the file's tensors, cheapest test first and before anything is
    allocated: the largest route must fit in the values the file holds, then the keys and shapes of a
    meta-device model must match, and a non-strict load may leave at most ``_MISSING_LIMIT`` values unset."""
    held = sum(e.numel for e in entries.values())
    needed = route_cost(spec, "largest").params
    if needed > held + (0 if strict else _MISSING_LIMIT):
        raise CheckpointError(
            f"{path}: does not fit architecture {spec.name!r}: the spec's largest route alone has {needed:,} "
            f"parameters, the file holds {held:,} values{_first_cheap_mismatch(spec, entries)}")
    expected = _expected(spec)
    _check_keys(path, spec, expected, entries, strict)
    unset = sum(e.numel for k, e in expected.items() if k not in entries)
    if unset > _MISSING_LIMIT:
        raise CheckpointError(f"{path}: does not fit architecture {spec.name!r}: the file lacks {unset:,} of the "
                              f"model's values (at most {_MISSING_LIMIT:,} may be missing in a non-strict load)")


def _first_cheap_mismatch(spec: ArchSpec, entries: Mapping[str, _Entry]) -> str:
    """The first part of the network (stem, a stage, the classifier) whose largest-route parameters alone
    exceed the values the file holds under its state-dict prefix, counted without building anything."""
    held: dict[str, int] = {}
    for key, entry in entries.items():
        found = re.match(r"(conv_stem|bn1|classifier|blocks\.\d+)\.", key)
        part = {"conv_stem": "stem", "bn1": "stem"}.get(found.group(1), found.group(1)) if found else ""
        held[part] = held.get(part, 0) + entry.numel
    for part, prefix, field, needed in _largest_params_by_part(spec):
        if needed > held.get(part, 0):
            return (f"; first mismatch: the spec's {field} alone needs {needed:,} parameters, the file's "
                    f"{prefix}* tensors hold {held.get(part, 0):,} values")
    return "; its channels, layers or num_classes describe more than the file holds"


def _largest_params_by_part(spec: ArchSpec) -> Iterator[tuple[str, str, str, int]]:
    """(part, its state-dict prefix, the spec fields deciding it, largest-route parameters) for the stem,
    every stage and the classifier: ``route_cost``'s walk, split up."""
    widths = largest_route(spec).widths(spec)
    k2, stem = spec.stem.kernel ** 2, widths[0]
    yield "stem", "conv_stem.", "stem.channels (or input.channels, stem.kernel)", spec.input.channels * stem * k2
    size = (conv_output_size(spec.input.height, spec.stem.kernel, spec.stem.stride),
            conv_output_size(spec.input.width, spec.stem.kernel, spec.stem.stride))
    per_stage: dict[int, int] = {}
    cin = stem
    for site in iter_blocks(spec):
        cout = widths[1 + site.stage_index]
        block = block_family(site.stage.block).cost(site, cin, cout, size)
        per_stage[site.stage_index] = per_stage.get(site.stage_index, 0) + block.pre.params + block.post.params
        cin, size = cout, block.size
    for i, params in per_stage.items():
        yield f"blocks.{i}", f"blocks.{i}.", f"stages[{i}] (channels, layers, kernel)", params
    yield "classifier", "classifier.", f"num_classes (or stages[{len(spec.stages) - 1}].channels)", \
        cin * spec.num_classes


def _check_keys(path: Path, spec: ArchSpec, expected: Mapping[str, _Entry],
                entries: Mapping[str, _Entry], strict: bool) -> None:
    missing = [k for k in expected if k not in entries]
    unexpected = [k for k in entries if k not in expected]
    misshaped = [k for k in expected if k in entries and entries[k].shape != expected[k].shape]
    wrong_kind = [k for k in expected if k in entries and (expected[k].floating and not entries[k].floating
                                                           or entries[k].dtype.startswith(("C", "complex")))]
    problems = []
    if missing and strict:
        problems.append(_listing("missing", missing))
    if unexpected and strict:
        problems.append(_listing("unexpected", unexpected))
    if misshaped:
        problems.append(_listing("mis-shaped", [f"{k} (file {list(entries[k].shape)}, model "
                                                f"{list(expected[k].shape)})" for k in misshaped]))
    if wrong_kind:
        problems.append(_listing("not floating point", [f"{k} ({entries[k].dtype})" for k in wrong_kind]))
    if problems:
        bad = set(misshaped) | set(wrong_kind) | (set(missing) if strict else set())
        first = next((k for k in expected if k in bad), None)
        if first is not None:
            problems.append(f"first mismatch: {first} (see the spec's {_spec_field(first, spec)})")
        raise CheckpointError(f"{path}: does not fit architecture {spec.name!r}:\n  " + "\n  ".join(problems))


def _listing(label: str, items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    more = f", ... and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else ""
    return f"{label} keys ({len(items)}): {shown}{more}"
