"""Stage I: train the supernet so every width works, with In-place Ensemble Bootstrapping (IEB).

Each step (DS-Net section 3.2): the widest subnet learns from the labels; random narrower subnets
learn from the soft predictions of an exponential-moving-average (EMA) copy of the supernet at the
widest width; the smallest subnet learns from the ensemble (mean probability) of the EMA's widest
and random-width predictions.  With ``ieb=False`` every narrower subnet instead distils from the
live widest subnet's own (detached) prediction: plain in-place distillation.

The widest subnet is the official code's ``largest`` mode, which also widens the early stages.
"""

from __future__ import annotations

import copy
import random

import torch
import torch.nn.functional as F

from dsnet_export.model import Supernet

from .config import SupernetConfig
from .routes import SMALLEST, WIDEST, random_routes


class Ema:
    """An exponential moving average of the supernet's parameters (buffers copied), in eval mode."""

    def __init__(self, model: Supernet, decay: float):
        self.model = copy.deepcopy(model).eval()
        self.decay = decay
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: Supernet) -> None:
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - self.decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def step_losses(model: Supernet, ema: Ema, x: torch.Tensor, y: torch.Tensor, config: SupernetConfig,
                rng: random.Random) -> dict[str, torch.Tensor]:
    """The losses of one sandwich step, keyed by route (sum them and backpropagate once)."""
    losses = {}
    widest_logits = model(x, WIDEST)
    losses[WIDEST] = F.cross_entropy(widest_logits, y, label_smoothing=config.label_smoothing)
    with torch.no_grad():
        teacher = F.softmax(ema.model(x, WIDEST) if config.ieb else widest_logits.detach(), dim=1)
    ensemble = [teacher]
    for route in random_routes(model.spec, config.random_routes, rng):
        losses[route] = soft_cross_entropy(model(x, route), teacher)
        if config.ieb:
            with torch.no_grad():
                ensemble.append(F.softmax(ema.model(x, route), dim=1))
    smallest_target = torch.stack(ensemble).mean(0) if config.ieb else teacher
    losses[SMALLEST] = soft_cross_entropy(model(x, SMALLEST), smallest_target)
    return losses
