"""Opening a bundle directory: manifest, path safety, sizes and hashes, external-data links.

Nothing here imports torch: an edge device loads bundles with numpy, onnx and onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import BundleError
from .manifest import MANIFEST_NAME, Manifest, parse_manifest

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Bundle:
    """A validated bundle: where it is and what its manifest says."""

    root: Path
    manifest: Manifest

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def weights_path(self) -> Path:
        return self.root / self.manifest.weights


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_bundle(directory: str | os.PathLike, *, verify: bool = True) -> Bundle:
    """Parse and check a bundle.

    Always: the manifest's schema and types, that every file name stays inside the bundle
    (no ``..``, no absolute paths, no links leading out), that files exist with the listed
    sizes, and that every ONNX file's external data points only at the bundle's weights file.
    With ``verify=True`` also every file's sha256.
    """
    root = Path(directory)
    manifest_path = root / MANIFEST_NAME
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path}: missing (is {root} a dsnet-export bundle?)")
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc})") from None
    manifest = parse_manifest(data, str(manifest_path))
    real_root = root.resolve()
    for name, entry in manifest.files.items():
        path = _inside(real_root, root, name, f"{manifest_path}: files[{name!r}]")
        size = path.stat().st_size
        if size != entry.size:
            raise BundleError(f"{path}: size {size} does not match the manifest's {entry.size} (files[{name!r}].size)")
        if verify:
            digest = sha256_file(path)
            if digest != entry.sha256:
                raise BundleError(f"{path}: sha256 {digest[:12]}... does not match the manifest's "
                                  f"{entry.sha256[:12]}... (files[{name!r}].sha256); the file was changed")
    for name in manifest.files:
        if name.endswith(".onnx"):
            check_external_data(root / name, manifest.weights)
    return Bundle(root, manifest)


def _inside(real_root: Path, root: Path, name: str, where: str) -> Path:
    pure = Path(name)
    if name == "" or pure.is_absolute() or ".." in pure.parts or "\\" in name:
        raise BundleError(f"{where}: file name {name!r} leaves the bundle (absolute or '..')")
    path = root / pure
    if not path.exists():
        raise BundleError(f"{path}: missing ({where})")
    resolved = path.resolve()
    if real_root != resolved and real_root not in resolved.parents:
        raise BundleError(f"{where}: {name!r} is a link that points outside the bundle (to {resolved})")
    if not resolved.is_file():
        raise BundleError(f"{path}: not a regular file ({where})")
    return path


def check_external_data(onnx_path: Path, weights_name: str) -> None:
    """Every external initializer of ``onnx_path`` must live in the bundle's weights file."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types on corrupt input
        raise BundleError(f"{onnx_path}: not a readable ONNX model ({exc})") from None
    for tensor in model.graph.initializer:
        if uses_external_data(tensor):
            location = ExternalDataInfo(tensor).location
            if location != weights_name:
                raise BundleError(f"{onnx_path}: initializer {tensor.name!r} reads external data from "
                                  f"{location!r}; a bundle's engines may only read {weights_name!r}")
