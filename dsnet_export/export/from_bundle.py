"""A torch supernet rebuilt from a bundle's own weights file, for what needs torch modules of its engines
(format conversion, the bench's PyTorch masking) when the checkpoint is not at hand."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ..arch import ArchSpec
from ..model import Supernet


def supernet_from_bundle(spec: ArchSpec, sources: Mapping[str, np.ndarray]) -> Supernet:
    """A ``Supernet`` holding a bundle's stored tensors, zero-filled beyond the stored prefixes
    (running variances of widths the bundle does not store are 1).  Every exported route runs
    exactly as in the bundle; only full-width masking touches the filled parts, on masked
    channels."""
    net = Supernet(spec)
    state = {}
    for key, tensor in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = tensor
            continue
        full = torch.ones_like(tensor) if key.endswith("running_var") else torch.zeros_like(tensor)
        if key in sources:
            stored = torch.from_numpy(np.array(sources[key], dtype=np.float32))
            full[tuple(slice(0, s) for s in stored.shape)] = stored
        state[key] = full
    net.load_state_dict(state)
    return net.eval()
