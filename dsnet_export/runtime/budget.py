"""The compute-budget knob: a per-route bias on the gate logits, calibrated to a target average MAdds.

The bias family is one number: ``bias_g = -lam * (macs_g - macs_min) / (macs_max - macs_min)``.
Raising ``lam`` makes wide routes dearer, and the average MAdds over a data set can only fall
(each sample's argmax moves to a cheaper route or stays), so a bisection on ``lam`` finds the
smallest penalty whose average meets the target.  The result is written next to the bundle's
hashed files (``budget.json``), never into them, and names the manifest it was made for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import BundleError, DsnetError
from ..files import write_json_atomic
from ..records import parse_record, strict_json_loads

BUDGET_NAME = "budget.json"
BUDGET_VERSION = 1
_STEPS = 60
_BIAS_LIMIT = 1e38  # the bias is applied as float32


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
    """Write atomically: a temp file beside ``path``, renamed over it; on any failure the temp file is
    removed and an earlier file at ``path`` is left as it was."""
    path = Path(path)
    if path.is_dir():
        raise DsnetError(f"{path}: is a directory; give the budget file's name")
    try:
        return write_json_atomic(path, asdict(budget))
    except OSError as exc:
        raise DsnetError(f"{path}: cannot write the budget file ({exc.strerror or exc}); "
                         f"{'the previous one is unchanged' if path.exists() else 'nothing was written'}") from None


def parse_budget(data, where: str = BUDGET_NAME) -> Budget:
    """Strictly parse budget JSON data: exactly the known fields, each of its type and in range;
    every error is a BundleError naming ``where`` and the field."""
    def fail(name: str, message: str):
        raise BundleError(f"{where}: {name}: {message}")

    if not isinstance(data, dict):
        raise BundleError(f"{where}: not a budget file (expected a JSON object, got {type(data).__name__})")
    if not _is_int(data.get("version")) or data["version"] != BUDGET_VERSION:
        fail("version", f"unsupported {data.get('version')!r:.40} (this dsnet-export reads version {BUDGET_VERSION})")
    try:
        budget = parse_record(Budget, data, where)  # fields, and each field's type
    except RecursionError:
        raise BundleError(f"{where}: nested too deeply") from None
    for name in ("target_macs", "samples"):
        if getattr(budget, name) >= 1 << 62:
            fail(name, f"out of range ({getattr(budget, name)!r:.40})")
    if any(h >= 1 << 62 for h in budget.histogram):
        fail("histogram", "a count is out of range")
    digest = budget.manifest_sha256
    if not (len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        fail("manifest_sha256", f"expected a 64-digit lower-case sha256, got {digest!r:.40}")
    for name in ("target_macs", "samples"):
        if getattr(budget, name) < 0:
            fail(name, f"expected a non-negative integer, got {getattr(budget, name)!r:.40}")
    for name in ("achieved_macs", "unbiased_macs"):
        if not _is_number(getattr(budget, name)) or getattr(budget, name) < 0:
            fail(name, f"expected a finite non-negative number, got {getattr(budget, name)!r:.40}")
    if not budget.bias or not all(_is_number(b, _BIAS_LIMIT) for b in budget.bias):
        fail("bias", f"expected a non-empty list of finite numbers (float32), got {budget.bias!r:.60}")
    if any(h < 0 for h in budget.histogram):
        fail("histogram", f"expected a list of non-negative integers, got {budget.histogram!r:.60}")
    if len(budget.histogram) != len(budget.bias):
        fail("histogram", f"has {len(budget.histogram)} counts for {len(budget.bias)} bias values (one per gate route)")
    if sum(budget.histogram) != budget.samples:
        fail("histogram", f"counts add up to {sum(budget.histogram)}, not samples ({budget.samples})")
    return budget


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value, limit: float = 1e300) -> bool:
    """A JSON number that is finite and within +-``limit`` as a float."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value)) and abs(float(value)) <= limit
    except OverflowError:  # an integer too large for a float
        return False


def load_budget(path: str | os.PathLike, bundle) -> Budget:
    """Read a budget file and check it was calibrated for this very bundle."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: no budget file (run: python -m dsnet_export calibrate {bundle.root} "
                          f"--data PATH --target-macs N)")
    try:
        data = strict_json_loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, out-of-range numbers, too deep nesting
        raise BundleError(f"{path}: not a budget file: not JSON ({exc})") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the budget file ({exc.strerror or exc})") from None
    budget = parse_budget(data, str(path))
    if budget.manifest_sha256 != manifest_digest(bundle.root):
        raise BundleError(f"{path}: manifest_sha256: calibrated for a different build of this bundle; recalibrate")
    if len(budget.bias) != len(bundle.manifest.gate.routes):
        raise BundleError(f"{path}: bias: needs {len(bundle.manifest.gate.routes)} values")
    return budget


def carry_over_budget(old_root: str | os.PathLike, new_root: str | os.PathLike) -> str | None:
    """When a bundle is rebuilt, keep the previous build's budget if it still means what it meant.

    It is kept when it was valid for the previous build and the new one has the same gate routes (names,
    widths and MAdds), the same input, and the same model (the same checkpoint sha256, or when either
    build does not record one, the same weights file): then the bias moves the same gate logits among
    the same costs, and the file is rewritten into ``new_root`` for the new manifest.  Otherwise it is
    left behind with the old build.  Returns a one-line note saying which and why, or None when the
    previous build had no budget file.
    """
    from .bundle import load_bundle

    old_root, new_root = Path(old_root), Path(new_root)
    if not (old_root / BUDGET_NAME).is_file():
        return None
    hint = f"recalibrate with: python -m dsnet_export calibrate {old_root} --data PATH --target-macs N"
    try:
        old = load_bundle(old_root, verify=False)
        budget = load_budget(old_root / BUDGET_NAME, old)
        new = load_bundle(new_root, verify=False).manifest
    except (DsnetError, OSError, ValueError) as exc:
        return f"dropped the previous {BUDGET_NAME}: it was not valid for the previous build ({exc}); {hint}"
    reason = _budget_change(old.manifest, new)
    if reason:
        return f"dropped the previous {BUDGET_NAME}: {reason}; {hint}"
    save_budget(dataclasses.replace(budget, manifest_sha256=manifest_digest(new_root)), new_root / BUDGET_NAME)
    return (f"kept {BUDGET_NAME} (target {budget.target_macs / 1e6:.2f}M MAdds): same gate routes, MAdds, input and "
            f"model as the build it was calibrated for")


def _budget_change(old, new) -> str | None:
    """Why a budget calibrated on manifest ``old`` would not mean the same on ``new``, or None."""
    def gate_routes(m):
        return [(m.routes[k].name, list(m.routes[k].widths), m.routes[k].macs) for k in m.gate.routes]

    if old.input.shape != new.input.shape:
        size = lambda m: "x".join(map(str, m.input.shape[1:]))  # noqa: E731
        return f"the input size changed ({size(old)} -> {size(new)}), and with it every route's MAdds"
    if old.input != new.input:
        return "the input preprocessing changed"
    if [r[0] for r in gate_routes(old)] != [r[0] for r in gate_routes(new)]:
        return (f"the gate's routes changed ({', '.join(r[0] for r in gate_routes(old))} -> "
                f"{', '.join(r[0] for r in gate_routes(new))})")
    if gate_routes(old) != gate_routes(new):
        return "the gate routes' widths or MAdds changed"
    before, after = old.source.get("checkpoint_sha256"), new.source.get("checkpoint_sha256")
    if before and after:
        if before != after:
            return "the bundle was built from a different checkpoint, so the gate's logits differ"
    elif old.files[old.weights].sha256 != new.files[new.weights].sha256:
        return "the weights changed, so the gate's logits differ"
    return None


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
