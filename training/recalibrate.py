"""Re-estimate every width's BatchNorm statistics after training (weights trained with shared
statistics drift; DS-Net re-computes them per width, like slimmable networks)."""

from __future__ import annotations

import numpy as np
import torch

from dsnet_export.datasets import Dataset
from dsnet_export.model import Supernet
from dsnet_export.model.layers import SlimBatchNorm2d

from .data import TrainBatches


@torch.no_grad()
def recalibrate_bn(model: Supernet, data: Dataset, *, batches: int, batch_size: int, seed: int,
                   device: str = "cpu", workers: int = 0) -> None:
    """Reset all statistics, then average them over ``batches`` training batches (not augmented) at
    every width."""
    norms = [m for m in model.modules() if isinstance(m, SlimBatchNorm2d)]
    momenta = [m.aux_bn[-1].momentum for m in norms]
    for m in norms:
        m.reset_statistics(None)
    spec = model.spec
    routes = ["largest", *(f"uniform:{k}" for k in range(spec.num_uniform_choices))]
    was_training = model.training
    model.train()
    rng = np.random.default_rng(seed)
    stream = TrainBatches(data, batch_size, device=device, workers=workers, augment=False)
    for i, (x, _) in enumerate(stream.epoch(rng)):
        if i >= batches:
            break
        for route in routes:
            model(x, route)
    for m, momentum in zip(norms, momenta):
        m.aux_bn[-1].momentum = momentum
    model.train(was_training)
