"""Calibrate the compute-budget knob: find the per-route gate bias whose average MAdds on your
data meets a target, print the achieved MAdds and the route histogram, and save it as
DIR/budget.json (outside the bundle's hashed files).  Apply it with `run --budget` or
Dispatcher.load(..., budget=True).

examples:
  python -m dsnet_export calibrate engines/dsmbnet --data val_images/ --target-macs 150M
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DsnetError
from .run import add_runtime_arguments
from .table import format_table

NAME = "calibrate"
HELP = "fit the gate bias so the average MAdds on your data meets a target"


def parse_macs(text: str) -> float:
    from ..runtime.budget import parse_macs as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="DIR", help="bundle directory")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="calibration inputs: images, folders of images, .npy or .npz")
    p.add_argument("--target-macs", type=parse_macs, required=True, metavar="N",
                   help="target average MAdds per sample, e.g. 150M")
    p.add_argument("--out", metavar="FILE", help="where to save the budget (default DIR/budget.json)")
    p.add_argument("--batch", type=int, default=32, help="gate batch size while collecting logits")
    add_runtime_arguments(p)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..runtime import Dispatcher, calibrate, save_budget
    from ..runtime.budget import BUDGET_NAME, manifest_digest
    from ..runtime.inputs import iter_inputs

    if args.batch < 1:
        raise DsnetError("--batch must be at least 1")
    with Dispatcher.load(args.bundle, providers=args.providers, threads=args.threads, verify=args.verify,
                         lazy=True) as dispatcher:
        m = dispatcher.manifest
        arrays = [item.array for item in iter_inputs(args.data, m.input)]
        if any(a.shape[1:] != arrays[0].shape[1:] for a in arrays):
            raise DsnetError("calibration arrays have different sample shapes")
        data = np.concatenate(arrays) if arrays else np.empty((0, *m.input.shape), np.float32)
        if data.shape[0] == 0:
            raise DsnetError("no calibration samples found")
        try:
            logits = np.concatenate([dispatcher.gate_logits(data[i:i + args.batch])
                                     for i in range(0, data.shape[0], args.batch)])
        except ValueError as exc:  # the dispatcher's input checks
            raise DsnetError(f"calibration data: {exc}") from None
    gate_routes = [m.routes[k] for k in m.gate.routes]
    budget = calibrate(logits, [r.macs for r in gate_routes], args.target_macs,
                       manifest_sha256=manifest_digest(Path(args.bundle)), data=", ".join(map(str, args.data)))
    out = save_budget(budget, args.out or Path(args.bundle) / BUDGET_NAME)
    print(format_table(["gate route", "route", "MAdds", "bias", "samples", "share"],
                       [[g, r.name, f"{r.macs / 1e6:.2f}M", f"{b + 0.0:+.3f}", n, f"{n / budget.samples:.1%}"]
                        for g, (r, b, n) in enumerate(zip(gate_routes, budget.bias, budget.histogram))]))
    print(f"\n{budget.samples} samples: average {budget.achieved_macs / 1e6:.2f}M MAdds with the bias "
          f"(target {budget.target_macs / 1e6:.2f}M; {budget.unbiased_macs / 1e6:.2f}M without)")
    print(f"saved {out}")
    return 0
