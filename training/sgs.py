"""Stage II: train the gate with Sandwich Gate Sparsification (SGS).

The supernet is frozen (BatchNorm in eval mode).  Each training sample gets a one-hot target: the
smallest route if the smallest subnet already classifies it correctly ("easy"), otherwise the
widest of the gate's routes ("hard"); the gate learns it with cross-entropy, optionally plus the
expected MAdds under the gate's soft choice.

``balance`` weights the two targets by inverse frequency within each batch.  SGS was designed on
ImageNet, where the smallest subnet is wrong on a large share of samples; when hard samples are
rare (digits: about one in five), plain cross-entropy is minimised by sending everything to the
smallest route and the gate learns nothing.  Balancing restores the regime SGS assumes.

Only what the gate alone uses is trained (the gated block's ``gate_parameters``).  In DS-MBNet that is
the head (``blocks.<gate stage>.first_block.gate.gate.0.weight``), as in the official code (its optimizer
takes ``model.get_gate()``): the gate's hidden layer is the squeeze-excite's reduce FC, and training it
would change every frozen route's output.  A residual network's gate has its own reduce layer, which no
route runs, so Stage II trains it with the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dsnet_export.model import Supernet


def gate_parameters(model: Supernet) -> list[torch.nn.Parameter]:
    """The parameters Stage II trains (every other one stays frozen)."""
    return model.gate_block.gate_parameters()


@torch.no_grad()
def sgs_targets(model: Supernet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """0 where the smallest route is right, else the index of the widest gate route."""
    correct = model(x, "smallest").argmax(1) == y
    return torch.where(correct, 0, model.spec.num_routes - 1)


def class_weights(targets: torch.Tensor, num_routes: int) -> torch.Tensor:
    """Inverse-frequency weights of the targets present (absent ones: 0)."""
    counts = torch.bincount(targets, minlength=num_routes).float()
    present = counts > 0
    return torch.where(present, counts.sum() / (present.sum() * counts.clamp(min=1)), torch.zeros_like(counts))


def gate_loss(model: Supernet, x: torch.Tensor, targets: torch.Tensor, route_macs: torch.Tensor,
              macs_weight: float, balance: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy on the SGS targets (+ expected relative MAdds); returns (loss, gate logits)."""
    _, hidden = model.pre_gate(x, 0)  # tracks gradients only into the gate's own (trainable) parameters
    logits = model.gate_block.gate_logits(hidden)
    weight = class_weights(targets, logits.shape[1]) if balance else None
    loss = F.cross_entropy(logits, targets, weight=weight)
    if macs_weight:
        loss = loss + macs_weight * (F.softmax(logits, 1) @ (route_macs / route_macs.max())).mean()
    return loss, logits
