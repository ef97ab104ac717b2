"""Calibrate the compute-budget knob: find the per-route gate bias whose average MAdds on your
data meets a target, print the achieved MAdds and the route histogram, and save it as
DIR/budget.json (outside the bundle's hashed files).  Apply it with `run --budget` or
Dispatcher.load(..., budget=True).

An unreadable image inside a folder (or among several --data inputs) is skipped with a warning
on stderr and counted at the end; --strict stops at the first one instead (exit 1).  --json PATH|-
also writes the budget and the route histogram as JSON.

examples (the first two commands make the files the others use):
  python -m dsnet_export build                                 # the embedded digits model -> engines/dsnet-digits
  python -m training export-digits digits_val/ --split val     # the digits validation split as PNGs
  python -m dsnet_export calibrate engines/dsnet-digits --data digits_val/ --target-macs 1.7M
  python -m dsnet_export run engines/dsnet-digits digits_val/0 --budget
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from ..errors import DsnetError
from ..tables import format_table
from .options import Output, add_bundle_argument, add_output_group, add_runtime_group, open_dispatcher, output_group

NAME = "calibrate"
HELP = "fit the gate bias so the average MAdds on your data meets a target"


#: The largest target a budget file can hold (``budget.json`` refuses counts from 2**62 up).
MAX_TARGET_MACS = float(1 << 62)


def parse_macs(text: str) -> float:
    """A target such as 150M or 1.2G: a finite number of MAdds below ``MAX_TARGET_MACS``."""
    from ..runtime.budget import parse_macs as parse

    try:
        value = parse(text)
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not value < MAX_TARGET_MACS:  # also inf ('1e400') and nan
        raise argparse.ArgumentTypeError(f"{str(text).strip()[:40]!r} is out of range (at most "
                                         f"{MAX_TARGET_MACS / 1e9:.3g}G MAdds)")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .argtypes import output_file, positive_int

    inputs = p.add_argument_group("inputs")
    add_bundle_argument(inputs)
    inputs.add_argument("--data", nargs="+", required=True, metavar="PATH",
                        help="calibration inputs: images, folders of images, .npy or .npz (required)")
    inputs.add_argument("--strict", action="store_true",
                        help="stop at the first unreadable image instead of skipping it (default: skip it)")
    calibration = p.add_argument_group("calibration")
    calibration.add_argument("--target-macs", type=parse_macs, required=True, metavar="N",
                             help="target average MAdds per sample, e.g. 150M (required)")
    calibration.add_argument("--batch", type=positive_int, default=32, metavar="N",
                             help="batch size of the gate runs that collect the logits (default 32)")
    add_runtime_group(p)
    output = output_group(p)
    output.add_argument("--out", type=output_file, metavar="FILE",
                        help="where to save the budget (default DIR/budget.json)")
    add_output_group(output, "the budget, the route histogram and where the budget was saved")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..runtime import calibrate, save_budget
    from ..runtime.budget import BUDGET_NAME, manifest_digest
    from ..runtime.inputs import iter_inputs, warn_skipped

    if args.batch < 1:
        raise DsnetError("--batch must be at least 1")
    out = Output(args)
    with open_dispatcher(args, lazy=True) as dispatcher:
        m = dispatcher.manifest
        skipped = []

        def skip(name: str, error: Exception) -> None:
            warn_skipped(name, error)
            skipped.append(name)

        arrays = [item.array for item in iter_inputs(args.data, m.input, on_error=None if args.strict else skip)]
        if any(a.shape[1:] != arrays[0].shape[1:] for a in arrays):
            raise DsnetError("calibration arrays have different sample shapes")
        data = np.concatenate(arrays) if arrays else np.empty((0, *m.input.shape), np.float32)
        if data.shape[0] == 0:
            raise DsnetError("no calibration samples found" + (f" ({len(skipped)} unreadable images skipped)"
                                                                 if skipped else ""))
        try:
            logits = np.concatenate([dispatcher.gate_logits(data[i:i + args.batch])
                                     for i in range(0, data.shape[0], args.batch)])
        except ValueError as exc:  # the dispatcher's input checks
            raise DsnetError(f"calibration data: {exc}") from None
    gate_routes = [m.routes[k] for k in m.gate.routes]
    budget = calibrate(logits, [r.macs for r in gate_routes], args.target_macs,
                       manifest_sha256=manifest_digest(Path(args.bundle)), data=", ".join(map(str, args.data)))
    saved = save_budget(budget, args.out or Path(args.bundle) / BUDGET_NAME)
    out.report(format_table(["gate route", "route", "MAdds", "bias", "samples", "share"],
                       [[g, r.name, f"{r.macs / 1e6:.2f}M", f"{b + 0.0:+.3f}", n, f"{n / budget.samples:.1%}"]
                        for g, (r, b, n) in enumerate(zip(gate_routes, budget.bias, budget.histogram))]))
    out.report(f"\n{budget.samples} samples: average {budget.achieved_macs / 1e6:.2f}M MAdds with the bias "
               f"(target {budget.target_macs / 1e6:.2f}M; {budget.unbiased_macs / 1e6:.2f}M without)")
    if skipped:
        out.report(f"{len(skipped)} unreadable image{'' if len(skipped) == 1 else 's'} skipped")
    out.report(f"saved {saved}")
    out.json({"bundle": str(args.bundle), "budget_file": str(saved), "skipped": len(skipped),
              "routes": [{"gate_index": g, "route": r.name, "macs": r.macs, "bias": float(b), "samples": int(n)}
                         for g, (r, b, n) in enumerate(zip(gate_routes, budget.bias, budget.histogram))],
              "budget": asdict(budget)})
    return 0
