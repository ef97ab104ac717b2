"""The two training loops, with a progress bar, a log line per epoch and resumable checkpoints."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dsnet_export import load_supernet
from dsnet_export.arch import ArchSpec
from dsnet_export.datasets import Dataset
from dsnet_export.errors import CheckpointError, DsnetError
from dsnet_export.imaging import Preprocessing
from dsnet_export.model import Supernet

from .config import GateConfig, SupernetConfig
from .data import TrainBatches, training_spec
from .evaluate import evaluate_model
from .ieb import Ema, step_losses
from .recalibrate import recalibrate_bn
from .sgs import gate_loss, gate_parameters, sgs_targets
from .state import load_state, save_checkpoint, save_state, state_path

Log = Callable[[str], None]


def _lr(config: SupernetConfig, step: int, total: int, per_epoch: int) -> float:
    warmup = config.warmup_epochs * per_epoch
    if step < warmup:
        return config.lr * (step + 1) / warmup
    return 0.5 * config.lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _rngs(seed: int) -> tuple[random.Random, np.random.Generator]:
    torch.manual_seed(seed)
    return random.Random(seed), np.random.default_rng(seed)


def _resume(out: Path, optimizer, py_rng, np_rng, log: Log) -> tuple[int, dict]:
    state = load_state(state_path(out))
    optimizer.load_state_dict(state["optimizer"])
    py_rng.setstate(state["py_rng"])
    np_rng.bit_generator.state = state["np_rng"]
    torch.set_rng_state(state["torch_rng"])
    log(f"resuming {out} after epoch {state['epoch']}")
    return state["epoch"], state


def _bar(batches: TrainBatches, progress: bool, desc: str) -> tqdm:
    """Counts images, so the bar shows throughput in images/s."""
    return tqdm(total=batches.images, unit="img", unit_scale=True, disable=not progress, leave=False, desc=desc)


def check_preprocessing(data: Dataset, spec: ArchSpec) -> None:
    """Training must feed the model what its exported manifest will tell the runtime to feed it."""
    expected = Preprocessing.from_spec(spec.input)
    if data.preprocessing != expected:
        raise DsnetError(f"{data.name} is preprocessed as [{data.preprocessing.describe()}] but {spec.name} expects "
                         f"[{expected.describe()}]; load the data for the model's input spec")


def initialise_from(model: Supernet, path: Path, log: Log = print) -> None:
    """Start Stage I from ``path``'s weights (a supernet of this architecture, an official checkpoint, or
    torchvision ResNet weights for a residual preset): every tensor whose name and shape match is copied; the
    rest (a classifier for another class count, a gate torchvision lacks) keeps its initialisation, and the log
    says which."""
    try:  # what the file declares (our checkpoints, official ones naming their arch)
        source = load_supernet(path).state_dict()
    except CheckpointError:  # a bare or torchvision state dict: read it as the preset this model was made from
        source = load_supernet(path, _registered_arch(model.spec)).state_dict()
    target = model.state_dict()
    taken = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    if not taken:
        raise DsnetError(f"--init {path}: none of its tensors fits {model.spec.name}")
    model.load_state_dict(taken, strict=False)
    kept = sorted(set(target) - set(taken))
    shown = ", ".join(sorted({k.rsplit(".", 1)[0] for k in kept})[:4])
    log(f"initial weights from {path}: {len(taken)} of {len(target)} tensors"
        + (f"; {len(kept)} keep their initialisation ({shown}{', ...' if len(kept) > 4 else ''})" if kept else ""))


def _registered_arch(spec: ArchSpec) -> str | ArchSpec:
    """The registered preset ``spec`` was made from (its head may be resized to the data's classes), else itself."""
    from dsnet_export.arch import get_arch, list_archs

    return spec.name if spec.name in list_archs() and get_arch(spec.name).stages == spec.stages else spec


def train_supernet(config: SupernetConfig, data: Dataset, out: Path, *, spec: ArchSpec | None = None,
                   resume: bool = False, progress: bool = True, log: Log = print) -> Supernet:
    """Stage I on ``data`` for ``spec`` (default: ``config.arch`` at ``config.input_size`` with one output
    per class).  ``out`` is rewritten after every epoch (with its ``.state.pt``); the final model has
    recalibrated BatchNorm statistics."""
    spec = spec or training_spec(config.arch, config.input_size, data.classes, data.name, log)
    check_preprocessing(data, spec)
    py_rng, np_rng = _rngs(config.seed)
    model = Supernet(spec, device=config.device)
    if config.init and not resume:
        initialise_from(model, Path(config.init), log)
    ema = Ema(model, config.ema_decay)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                                weight_decay=config.weight_decay)
    batches = TrainBatches(data, config.batch_size, device=config.device, workers=config.workers,
                           crop_scale=config.crop_scale, flip=config.flip)
    per_epoch = batches.per_epoch
    info = {"stage": "supernet", "config": asdict(config), "data": data.describe()}
    start = 0
    if resume:
        if not state_path(out).is_file():
            raise DsnetError(f"{out}: nothing to resume (no {state_path(out).name})")
        model.load_state_dict(load_supernet(out).state_dict())
        start, state = _resume(out, optimizer, py_rng, np_rng, log)
        ema.model.load_state_dict(state["ema"])
        if start >= config.epochs:
            log("already trained; nothing to do")
            return model
    total = config.epochs * per_epoch
    for epoch in range(start, config.epochs):
        model.train()
        started, sums, count = time.perf_counter(), {}, 0
        bar = _bar(batches, progress, f"supernet {epoch + 1}/{config.epochs}")
        for i, (x, y) in enumerate(batches.epoch(np_rng)):
            for group in optimizer.param_groups:
                group["lr"] = _lr(config, epoch * per_epoch + i, total, per_epoch)
            losses = step_losses(model, ema, x, y, config, py_rng)
            optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            optimizer.step()
            ema.update(model)
            for name in ("largest", "smallest"):
                sums[name] = sums.get(name, 0.0) + losses[name].item()
            count += 1
            bar.update(len(y))
        bar.close()
        save_checkpoint(model, out, {**info, "epoch": epoch + 1})
        save_state(state_path(out), epoch=epoch + 1, optimizer=optimizer, ema_model=ema.model, py_rng=py_rng,
                   np_rng=np_rng)
        log(f"supernet epoch {epoch + 1}/{config.epochs}: loss widest {sums['largest'] / count:.3f}, "
            f"smallest {sums['smallest'] / count:.3f}, lr {optimizer.param_groups[0]['lr']:.4f}, "
            f"{time.perf_counter() - started:.1f} s ({batches.images / (time.perf_counter() - started):.0f} img/s)")
    best, best_name, best_score = model, "live", -1.0
    for name, candidate in (("live", model), ("ema", ema.model)):
        recalibrate_bn(candidate, data, batches=config.recalibration_batches, batch_size=config.batch_size,
                       seed=config.seed, device=config.device, workers=config.workers)
        score = np.mean([r.accuracy for r in evaluate_model(candidate, data, "val").routes])
        log(f"after BN recalibration, {name} weights: mean validation accuracy over routes {score:.2%}")
        if score > best_score:
            best, best_name, best_score = candidate, name, score
    save_checkpoint(best, out, {**info, "epoch": config.epochs, "weights": best_name})
    return best.eval()


def train_gate(config: GateConfig, data: Dataset, checkpoint: Path, out: Path, *, resume: bool = False,
               progress: bool = True, log: Log = print) -> Supernet:
    """Stage II on a Stage I checkpoint; only what the gate alone uses changes (``sgs.gate_parameters``)."""
    py_rng, np_rng = _rngs(config.seed)
    model = load_supernet(out if resume else checkpoint, device=config.device)
    check_preprocessing(data, model.spec)
    for p in model.parameters():
        p.requires_grad_(False)
    trained = gate_parameters(model)
    for p in trained:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(trained, lr=config.lr)
    macs = torch.tensor([model.cost(g).macs for g in range(model.spec.num_routes)], dtype=torch.float32,
                        device=config.device)
    start = _resume(out, optimizer, py_rng, np_rng, log)[0] if resume else 0
    batches = TrainBatches(data, config.batch_size, device=config.device, workers=config.workers,
                           crop_scale=config.crop_scale, flip=config.flip)
    info = {"stage": "gate", "config": asdict(config), "data": data.describe()}
    for epoch in range(start, config.epochs):
        model.eval()  # frozen supernet: BatchNorm uses its statistics
        started, hits, hard, seen = time.perf_counter(), 0, 0, 0
        bar = _bar(batches, progress, f"gate {epoch + 1}/{config.epochs}")
        for xt, yt in batches.epoch(np_rng):
            targets = sgs_targets(model, xt, yt)
            loss, logits = gate_loss(model, xt, targets, macs, config.macs_weight, config.balance)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            hits += int((logits.argmax(1) == targets).sum())
            hard += int((targets != 0).sum())
            seen += len(targets)
            bar.update(len(targets))
        bar.close()
        save_checkpoint(model, out, {**info, "epoch": epoch + 1})
        save_state(state_path(out), epoch=epoch + 1, optimizer=optimizer, ema_model=None, py_rng=py_rng,
                   np_rng=np_rng)
        log(f"gate epoch {epoch + 1}/{config.epochs}: gate accuracy vs SGS targets {hits / seen:.2%}, "
            f"hard samples {hard / seen:.1%}, {time.perf_counter() - started:.1f} s")
    return model.eval()
