"""Evaluating a torch supernet on a dataset split: each route, and the gate's per-sample routing."""

from __future__ import annotations

import numpy as np
import torch

from dsnet_export.datasets import Dataset
from dsnet_export.evaluation import Evaluation, Tally
from dsnet_export.model import Supernet

from .data import eval_batches
from .routes import evaluated_routes


@torch.no_grad()
def evaluate_model(model: Supernet, data: Dataset, split: str, batch_size: int = 256,
                   mapping: np.ndarray | None = None) -> Evaluation:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    names = {r: model.route(r).name for r in evaluated_routes(model.spec)}
    gate_names = [model.route(g).name for g in range(model.spec.num_routes)]
    tally = Tally({name: model.cost(route).macs for route, name in names.items()}, gate_names)
    for xb, y in eval_batches(data, split, batch_size, device, mapping):
        out = model.forward_dynamic(xb)
        tally.add(y, {name: model(xb, route).cpu().numpy() for route, name in names.items()},
                  out.logits.cpu().numpy(), out.gate_index.cpu().numpy())
    model.train(was_training)
    return tally.result()


@torch.no_grad()
def gate_accuracy(model: Supernet, data: Dataset, split: str, batch_size: int = 256,
                  mapping: np.ndarray | None = None) -> float:
    """How often the gate picks the SGS target (smallest if the smallest route is right, else the widest)."""
    from .sgs import sgs_targets

    device = next(model.parameters()).device
    hits = seen = 0
    for xb, y in eval_batches(data, split, batch_size, device, mapping):
        hits += int((model.gate_logits(xb).argmax(1) == sgs_targets(model, xb, torch.from_numpy(y).to(device))).sum())
        seen += len(y)
    return hits / max(seen, 1)
