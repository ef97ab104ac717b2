"""Run a bundle on images, image folders or .npy/.npz arrays with the ONNX Runtime dispatcher.

Prints, per sample, the top-5 classes (softmax probability), the route it took, its MAdds and
the latency of its batch.  Images are preprocessed as the manifest says; arrays are taken as
preprocessed ([C,H,W] or [N,C,H,W]; each array of an .npz is one batch).

examples:
  python -m dsnet_export run engines/dsnet-digits samples/digits/
  python -m dsnet_export run engines/dsmbnet cat.jpg --route 0
  python -m dsnet_export run engines/dsmbnet batch.npz --json results.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from ..errors import DsnetError
from ..runtime.postprocess import top_k

NAME = "run"
HELP = "run a bundle on images or arrays and print top-5 classes, routes and MAdds"


def add_runtime_arguments(p: argparse.ArgumentParser) -> None:
    """Options every dispatcher-backed command shares."""
    p.add_argument("--providers", default=None, help="ONNX Runtime providers, e.g. cpu or cuda,cpu (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads per session (default: ORT's)")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the sha256 check on load")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="DIR", help="bundle directory")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, folders of images, .npy or .npz")
    p.add_argument("--route", default=None,
                   help="force every sample through this route (index or name, e.g. 0 or largest)")
    p.add_argument("--policy", choices=["per-sample", "whole-batch"], default="per-sample",
                   help="per-sample routing (default) or the widest chosen route for the whole batch")
    p.add_argument("--budget", nargs="?", const=True, default=None, metavar="FILE",
                   help="apply the gate bias from calibrate (default file: DIR/budget.json)")
    p.add_argument("--top", type=int, default=5, help="classes to print per sample (default 5)")
    p.add_argument("--json", metavar="PATH", help="write logits, routes and MAdds per input as JSON ('-': stdout)")
    add_runtime_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ..runtime import Dispatcher
    from ..runtime.inputs import iter_inputs

    route = int(args.route) if args.route is not None and args.route.isdigit() else args.route
    results = {}
    with Dispatcher.load(args.bundle, providers=args.providers, threads=args.threads, verify=args.verify,
                         policy=args.policy, budget=args.budget) as dispatcher:
        names = [r.name for r in dispatcher.routes]
        for item in iter_inputs(args.inputs, dispatcher.manifest.input):
            start = time.perf_counter()
            try:
                result = dispatcher.run(item.array, route)
            except ValueError as exc:  # the dispatcher's input checks: a user error here
                raise DsnetError(f"{item.name}: {exc}") from None
            latency = (time.perf_counter() - start) * 1e3
            results[item.name] = {"logits": result.logits.tolist(), "routes": result.routes.tolist(),
                                  "macs": result.macs.tolist(), "latency_ms": latency}
            if args.json == "-":
                continue
            for i in range(item.array.shape[0]):
                label = item.name if item.array.shape[0] == 1 else f"{item.name}[{i}]"
                print(f"{label}: route {result.routes[i]} ({names[result.routes[i]]}), "
                      f"{result.macs[i] / 1e6:.2f}M MAdds, {latency:.1f} ms/batch, top-{args.top}: "
                      f"{_top(result.logits[i], args.top)}")
    if args.json:
        text = json.dumps({"bundle": str(args.bundle), "inputs": results}, indent=1)
        if args.json == "-":
            sys.stdout.write(text + "\n")
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    return 0


def _top(logits: np.ndarray, k: int) -> str:
    return ", ".join(f"{c} ({p:.3f})" for c, p in top_k(logits, k))
