"""Hyper-parameters of both stages, with defaults that train ``ds_mbnet_digits`` on 2 CPU cores."""

from __future__ import annotations

from dataclasses import dataclass


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
    seed: int = 0
    device: str = "cpu"


@dataclass
class GateConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.01                # Adam on the gate head only
    macs_weight: float = 0.0        # weight of the expected-MAdds penalty (relative to the widest route)
    balance: bool = True            # weight easy/hard targets by inverse frequency (see training.sgs)
    seed: int = 0
    device: str = "cpu"
