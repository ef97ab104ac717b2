"""``verify``: a built bundle against the checkpoint it came from."""

from __future__ import annotations

import os

from ..arch import ArchSpec
from ..model import load_supernet
from ..runtime.bundle import Bundle
from ..runtime.compare import EngineDiff
from .parity import compare_with_supernet, random_input


def verify_against_checkpoint(bundle: Bundle, checkpoint: str | os.PathLike, *, batch: int = 4,
                              seed: int = 0) -> list[EngineDiff]:
    """Max abs difference of every engine vs the torch supernet on a seeded random batch."""
    spec = ArchSpec.from_dict(bundle.manifest.arch, where=f"{bundle.root}: manifest arch")
    model = load_supernet(checkpoint, spec)
    return compare_with_supernet(bundle.root, bundle.manifest, model, random_input(bundle.manifest, batch, seed))
