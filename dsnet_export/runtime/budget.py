"""The compute-budget knob: a per-route bias on the gate logits, calibrated to a target average MAdds.

The bias family is one number: ``bias_g = -lam * (macs_g - macs_min) / (macs_max - macs_min)``.
Raising ``lam`` makes wide routes dearer, and the average MAdds over a data set can only fall
(each sample's argmax moves to a cheaper route or stays), so a bisection on ``lam`` finds the
smallest penalty whose average meets the target.  The result is written next to the bundle's
hashed files (``budget.json``), never into them, and names the manifest it was made for.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import BundleError, DsnetError

BUDGET_NAME = "budget.json"
BUDGET_VERSION = 1
_STEPS = 60


@dataclass(frozen=True)
class Budget:
    version: int
    manifest_sha256: str
    target_macs: int
    achieved_macs: float
    unbiased_macs: float
    bias: list[float]
    histogram: list[int]   # samples per gate route under the bias
    samples: int
    data: str


def parse_macs(text: str) -> float:
    """'150M', '1.2G', '800k' or a plain number -> MAdds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kKmMgG]?)\s*", str(text))
    if not match:
        raise ValueError(f"expected a number of MAdds such as 150M or 1.2G, got {text!r}")
    return float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2).lower()]


def routing_macs(gate_logits: np.ndarray, route_macs: np.ndarray, bias: np.ndarray) -> tuple[float, np.ndarray]:
    """Average MAdds and per-route counts when ``bias`` is added to ``gate_logits``."""
    choice = np.argmax(gate_logits + bias, axis=1)
    return float(route_macs[choice].mean()), np.bincount(choice, minlength=len(route_macs))


def search_bias(gate_logits: np.ndarray, route_macs: np.ndarray, target: float) -> np.ndarray:
    """The bias whose average MAdds is the largest one not above ``target``."""
    macs = np.asarray(route_macs, np.float64)
    low, high = macs.min(), macs.max()
    if not low <= target:
        raise DsnetError(f"target {target / 1e6:.2f}M MAdds is below the cheapest route ({low / 1e6:.2f}M)")
    direction = (macs - low) / (high - low) if high > low else np.zeros_like(macs)
    spread = float(np.ptp(gate_logits)) + 1.0
    # Far enough apart that lam_lo routes every sample to the widest route and lam_hi to the cheapest.
    lam_lo, lam_hi = -4.0 * spread, 4.0 * spread

    def average(lam: float) -> float:
        return routing_macs(gate_logits, macs, (-lam * direction).astype(np.float32))[0]

    if average(lam_lo) <= target:
        return (-lam_lo * direction).astype(np.float32)
    for _ in range(_STEPS):
        mid = 0.5 * (lam_lo + lam_hi)
        if average(mid) <= target:
            lam_hi = mid
        else:
            lam_lo = mid
    return (-lam_hi * direction).astype(np.float32)


def calibrate(gate_logits: np.ndarray, route_macs: list[int], target_macs: float, *, manifest_sha256: str,
              data: str) -> Budget:
    macs = np.asarray(route_macs, np.float64)
    bias = search_bias(gate_logits, macs, target_macs)
    achieved, hist = routing_macs(gate_logits, macs, bias)
    unbiased = routing_macs(gate_logits, macs, np.zeros_like(bias))[0]
    return Budget(BUDGET_VERSION, manifest_sha256, int(target_macs), achieved, unbiased,
                  [float(b) for b in bias], [int(h) for h in hist], int(gate_logits.shape[0]), data)


def manifest_digest(bundle_root: Path) -> str:
    """What a budget depends on: the manifest without its TensorRT plans (adding plans keeps a budget valid)."""
    from .manifest import MANIFEST_NAME

    data = json.loads((Path(bundle_root) / MANIFEST_NAME).read_text())
    data.pop("trt", None)
    data["files"] = {k: v for k, v in data.get("files", {}).items() if not k.startswith("trt/")}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def save_budget(budget: Budget, path: str | os.PathLike) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(asdict(budget), indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load_budget(path: str | os.PathLike, bundle) -> Budget:
    """Read a budget file and check it was calibrated for this very bundle."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: no budget file (run: python -m dsnet_export calibrate {bundle.root} "
                          f"--data PATH --target-macs N)")
    try:
        data = json.loads(path.read_text())
        budget = Budget(**data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise BundleError(f"{path}: not a budget file ({exc})") from None
    if budget.version != BUDGET_VERSION:
        raise BundleError(f"{path}: version: unsupported {budget.version!r}")
    if budget.manifest_sha256 != manifest_digest(bundle.root):
        raise BundleError(f"{path}: manifest_sha256: calibrated for a different build of this bundle; recalibrate")
    if len(budget.bias) != len(bundle.manifest.gate.routes):
        raise BundleError(f"{path}: bias: needs {len(bundle.manifest.gate.routes)} values")
    return budget


class OnlineBudget:
    """Keeps a stream's average MAdds near a target: the bias is re-fitted on the gate logits of the
    last ``window`` samples every ``every`` samples (for cameras, where no calibration set exists)."""

    def __init__(self, route_macs: list[int], target_macs: float, *, window: int = 256, every: int = 16):
        self.route_macs = np.asarray(route_macs, np.float64)
        if target_macs < self.route_macs.min():
            raise DsnetError(f"target {target_macs / 1e6:.2f}M MAdds is below the cheapest route "
                             f"({self.route_macs.min() / 1e6:.2f}M)")
        self.target, self.window, self.every = float(target_macs), window, every
        self.bias = np.zeros(len(route_macs), np.float32)
        self._seen: list[np.ndarray] = []
        self._since = 0

    def update(self, gate_logits: np.ndarray) -> np.ndarray:
        """Record a batch of raw gate logits; returns the bias to use from now on."""
        self._seen.append(np.asarray(gate_logits, np.float32))
        self._since += len(gate_logits)
        if self._since >= self.every:
            history = np.concatenate(self._seen)[-self.window:]
            self._seen = [history]
            self.bias = search_bias(history, self.route_macs, self.target)
            self._since = 0
        return self.bias
