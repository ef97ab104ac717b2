"""Hyper-parameters of both stages, with defaults that train ``ds_mbnet_digits`` on 2 CPU cores."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from dsnet_export.errors import DsnetError


@dataclass
class SupernetConfig:
    arch: str = "ds_mbnet_digits"
    epochs: int = 50
    batch_size: int = 64
    lr: float = 0.1                 # SGD, Nesterov momentum, cosine schedule after a linear warm-up
    momentum: float = 0.9
    weight_decay: float = 5e-5
    warmup_epochs: int = 2
    label_smoothing: float = 0.1    # for the widest route, trained on labels
    random_routes: int = 2          # sampled uniform widths per step, between the smallest and the widest
    ieb: bool = True                # In-place Ensemble Bootstrapping; False: in-place distillation
    ema_decay: float = 0.99         # the bootstrapping teacher is an exponential moving average
    recalibration_batches: int = 20
    input_size: int = 0             # training (and exported) input size; 0: the preset's
    split_seed: int = 0             # seed of the train/val/test draw, recorded in the checkpoint
    crop_scale: float = 0.25        # image folders: random-resized crops cover this share of the area or more
    flip: bool = True               # image folders: random horizontal flips (off for text, digits, signs)
    workers: int = 2                # image folders: DataLoader worker processes decoding and augmenting
    seed: int = 0                   # initial weights, sampling and augmentation (not the split)
    device: str = "cpu"
    init: str = ""                  # start from this checkpoint's weights (any format, torchvision ResNets too)

    def validate(self) -> SupernetConfig:
        """Raise DsnetError naming the first flag with an unusable value (before any work starts)."""
        from dsnet_export.arch import list_archs

        if self.arch not in list_archs():
            _fail("arch", self.arch, f"unknown architecture (one of {', '.join(list_archs())})")
        _check_loop(self)
        _in_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        _at_least("weight-decay", self.weight_decay, 0)
        _at_least("warmup-epochs", self.warmup_epochs, 0)
        _in_range("label-smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        _at_least("random-routes", self.random_routes, 0)
        _in_range("ema-decay", self.ema_decay, 0.0, 1.0)
        _at_least("recalibration-batches", self.recalibration_batches, 0)
        if self.input_size != 0:
            _in_range("input-size", self.input_size, 8, 4096, hint="0 for the preset's size")
        _at_least("split-seed", self.split_seed, 0)
        if self.init and not Path(self.init).is_file():
            _fail("init", self.init, "no such checkpoint file")
        return self


@dataclass
class GateConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.01                # Adam on the gate head only
    macs_weight: float = 0.0        # weight of the expected-MAdds penalty (relative to the widest route)
    balance: bool = True            # weight easy/hard targets by inverse frequency (see training.sgs)
    crop_scale: float = 0.25        # image folders: as for the supernet
    flip: bool = True
    workers: int = 2
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> GateConfig:
        """Raise DsnetError naming the first flag with an unusable value (before any work starts)."""
        _check_loop(self)
        _at_least("macs-weight", self.macs_weight, 0)
        return self


def _check_loop(config: SupernetConfig | GateConfig) -> None:
    """The flags both stages' training loops share."""
    _at_least("epochs", config.epochs, 1)
    _at_least("batch-size", config.batch_size, 1)
    _positive("lr", config.lr)
    _crop_scale(config.crop_scale)
    _at_least("workers", config.workers, 0)
    _at_least("seed", config.seed, 0)
    check_device(config.device)


def check_device(device: str) -> None:
    """``--device``: a torch device this machine has (cpu, cuda, cuda:N, mps)."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        _fail("device", device, "not a torch device (e.g. cpu, cuda, cuda:1)")
    build = _torch_build(torch)
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            _fail("device", device, f"CUDA is not available on this machine ({build})")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            _fail("device", device, f"this machine has {count} CUDA device{'' if count == 1 else 's'} "
                                    f"(cuda:0..cuda:{count - 1})")
    elif parsed.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            _fail("device", device, f"Apple MPS is not available on this machine ({build})")
    elif parsed.type != "cpu":
        _fail("device", device, "use cpu, cuda, cuda:N or mps")


def _torch_build(torch) -> str:
    version = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    cuda = getattr(torch.version, "cuda", None)
    return f"torch {version} CPU build" if not cuda else f"torch {version} built for CUDA {cuda}, no usable GPU found"


def _fail(flag: str, value, message: str):
    raise DsnetError(f"--{flag} {value}: {message}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _at_least(flag: str, value, low) -> None:
    if not _is_number(value) or value < low:
        _fail(flag, value, f"must be at least {low}")


def _positive(flag: str, value) -> None:
    if not _is_number(value) or value <= 0:
        _fail(flag, value, "must be a positive number")


def _in_range(flag: str, value, low, high, *, high_open: bool = False, hint: str = "") -> None:
    ok = _is_number(value) and low <= value and (value < high if high_open else value <= high)
    if not ok:
        bounds = f"at least {low} and below {high}" if high_open else f"in {low}..{high}"
        _fail(flag, value, f"must be {bounds}{f'; {hint}' if hint else ''}")


def _crop_scale(value) -> None:
    if not _is_number(value) or not 0 < value <= 1:
        _fail("crop-scale", value, "must be in (0, 1]: the smallest share of the image area a random crop covers")
