"""Mixed batches: inputs whose gate choices cover several routes.

A per-sample dispatcher only shows what it saves when a batch mixes routes.  The batch is
picked from a pool of inputs (``--data`` arrays or images, else synthetic images), after the
gate has scored every one of them:

* when the gate's own choices (no bias) already cover every route the batch can hold, those
  choices are used as they are;
* otherwise a per-route bias on the gate logits (the dispatcher's compute-budget knob) is
  searched that spreads the pool evenly over the routes, and that bias is applied by every
  contender (dispatcher and masking alike), so all of them route each sample the same way.

Then the batch takes samples round-robin over the routes (route 0, 1, 2, 3, 0, 1, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def synthetic_pool(n: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """``n`` images [C,H,W] of smooth blobs plus noise, with per-sample contrast and noise level,
    so that the gate's logits differ from sample to sample (float32, roughly normalised)."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    low = rng.standard_normal((n, c, 4, 4)) * rng.uniform(0.2, 1.2, (n, 1, 1, 1))
    rows = np.minimum(np.arange(h) * 4 // h, 3)
    cols = np.minimum(np.arange(w) * 4 // w, 3)
    smooth = low[:, :, rows][:, :, :, cols]
    noise = rng.standard_normal((n, c, h, w)) * rng.uniform(0.0, 1.0, (n, 1, 1, 1))
    return np.ascontiguousarray(smooth + noise, dtype=np.float32)


def balance_bias(gate_logits: np.ndarray, steps: int = 400) -> np.ndarray:
    """A per-route bias under which the pool's argmax choices are spread as evenly as possible."""
    n, r = gate_logits.shape
    bias = -gate_logits.mean(0)
    spread = float(np.std(gate_logits)) or 1.0
    best, best_score = bias.copy(), np.inf
    for i in range(steps):
        counts = np.bincount(np.argmax(gate_logits + bias, axis=1), minlength=r)
        share = counts / n
        score = float(np.abs(share - 1.0 / r).sum())
        if score < best_score:
            best, best_score = bias.copy(), score
        if score == 0.0:
            break
        bias = bias - spread * 0.5 * (1.0 - i / steps) * (share - 1.0 / r)
    return best.astype(np.float32)


@dataclass(frozen=True)
class MixedChoice:
    indexes: np.ndarray     # pool rows forming the batch
    routes: np.ndarray      # gate route of each of them (under ``bias``)
    bias: np.ndarray        # gate bias to apply (zeros when none was needed)
    biased: bool


def choose_mixed(gate_logits: np.ndarray, batch: int) -> MixedChoice:
    """Pick ``batch`` pool rows round-robin over the gate's routes (see the module docstring)."""
    n, r = gate_logits.shape
    if batch > n:
        raise ValueError(f"a mixed batch of {batch} needs at least {batch} pool samples, got {n}")
    wanted = min(r, batch)
    bias = np.zeros(r, np.float32)
    choice = np.argmax(gate_logits, axis=1)
    biased = len(np.unique(choice)) < wanted
    if biased:
        bias = balance_bias(gate_logits)
        choice = np.argmax(gate_logits + bias, axis=1)
    queues = {g: list(np.flatnonzero(choice == g)) for g in range(r)}
    picked: list[int] = []
    g = 0
    while len(picked) < batch:  # batch <= n: some queue always has a sample left
        while not queues[g % r]:
            g += 1
        picked.append(int(queues[g % r].pop(0)))
        g += 1
    indexes = np.array(picked, np.int64)
    return MixedChoice(indexes, choice[indexes].astype(np.int64), bias, biased)
