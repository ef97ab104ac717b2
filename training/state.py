"""Checkpoints: the model in the project's format (safetensors + spec), and a resumable training state
beside it (optimizer, EMA, epoch, RNG) as a torch file read back with ``weights_only=True``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from dsnet_export import save_supernet
from dsnet_export.files import atomic_file
from dsnet_export.model import Supernet


def state_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".state.pt")


def save_checkpoint(model: Supernet, path: Path, info: dict) -> Path:
    return save_supernet(model, path, {"training": json.dumps(info)})


def save_state(path: Path, *, epoch: int, optimizer, ema_model: Supernet | None, py_rng: random.Random,
               np_rng: np.random.Generator, extra: dict | None = None) -> None:
    state = {"epoch": epoch, "optimizer": optimizer.state_dict(),
             "ema": ema_model.state_dict() if ema_model is not None else {},
             "py_rng": json.dumps(py_rng.getstate()), "np_rng": json.dumps(np_rng.bit_generator.state),
             "torch_rng": torch.get_rng_state(), "extra": json.dumps(extra or {})}
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    py = json.loads(state["py_rng"])
    state["py_rng"] = (py[0], tuple(py[1]), py[2])
    state["np_rng"] = json.loads(state["np_rng"])
    state["extra"] = json.loads(state["extra"])
    return state
