"""Evaluating a torch supernet on a dataset split: each route, and the gate's per-sample routing."""

from __future__ import annotations

import numpy as np
import torch

from dsnet_export.datasets import Dataset
from dsnet_export.evaluation import Evaluation, summarize
from dsnet_export.model import Supernet

from .routes import evaluated_routes


@torch.no_grad()
def evaluate_model(model: Supernet, data: Dataset, split: str, batch_size: int = 256) -> Evaluation:
    was_training = model.training
    model.eval()
    x, y = data.normalized(split)
    device = next(model.parameters()).device
    names = {r: model.route(r).name for r in evaluated_routes(model.spec)}
    logits = {name: [] for name in names.values()}
    dynamic, choice = [], []
    for i in range(0, len(y), batch_size):
        xb = torch.from_numpy(x[i:i + batch_size]).to(device)
        for route, name in names.items():
            logits[name].append(model(xb, route).cpu().numpy())
        out = model.forward_dynamic(xb)
        dynamic.append(out.logits.cpu().numpy())
        choice.append(out.routes.cpu().numpy())
    model.train(was_training)
    macs = {name: model.cost(route).macs for route, name in names.items()}
    gate_names = [model.route(g).name for g in range(model.spec.num_routes)]
    return summarize(y, {k: np.concatenate(v) for k, v in logits.items()}, macs, np.concatenate(dynamic),
                     np.concatenate(choice), gate_names)


@torch.no_grad()
def gate_accuracy(model: Supernet, data: Dataset, split: str, batch_size: int = 256) -> float:
    """How often the gate picks the SGS target (smallest if the smallest route is right, else the widest)."""
    from .sgs import sgs_targets

    x, y = data.normalized(split)
    device = next(model.parameters()).device
    hits = 0
    for i in range(0, len(y), batch_size):
        xb, yb = torch.from_numpy(x[i:i + batch_size]).to(device), torch.from_numpy(y[i:i + batch_size]).to(device)
        hits += int((model.gate_logits(xb).argmax(1) == sgs_targets(model, xb, yb)).sum())
    return hits / len(y)
