"""Evaluate a bundle on a labelled dataset through the dispatcher: accuracy and MAdds of every route,
the gate's dynamic accuracy and average MAdds, and the route histogram; optionally a PNG of accuracy
vs MAdds (each route and the dynamic point, as DS-Net's Figure 1) with the histogram.

--dataset digits (scikit-learn's bundled digits with graded corruptions) or a folder of class
sub-folders of images.

examples:
  python -m dsnet_export eval engines/dsnet-digits --dataset digits --png eval.png
  python -m dsnet_export eval engines/mymodel --dataset val_images/ --budget
"""

from __future__ import annotations

import argparse
import json

from .run import add_runtime_arguments

NAME = "eval"
HELP = "per-route and dynamic accuracy, MAdds and route histogram on a labelled dataset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="DIR", help="bundle directory")
    p.add_argument("--dataset", default="digits", help="digits, or a folder of class sub-folders")
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--seed", type=int, default=0, help="dataset split seed")
    p.add_argument("--batch", type=int, default=64, help="batch size")
    p.add_argument("--budget", nargs="?", const=True, default=None, metavar="FILE",
                   help="apply the gate bias from calibrate (default file: DIR/budget.json)")
    p.add_argument("--png", metavar="PATH", help="write the accuracy-vs-MAdds plot")
    p.add_argument("--json", metavar="PATH", help="write the numbers as JSON")
    add_runtime_arguments(p)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..datasets import load_dataset
    from ..evaluation import format_evaluation, plot_evaluation, summarize
    from ..runtime import Dispatcher

    with Dispatcher.load(args.bundle, providers=args.providers, threads=args.threads, verify=args.verify,
                         budget=args.budget) as dispatcher:
        m = dispatcher.manifest
        data = load_dataset(args.dataset, size=m.input.shape[1], seed=args.seed)
        x, y = data.normalized(args.split)
        batches = [x[i:i + args.batch] for i in range(0, len(y), args.batch)]
        routes = {r.name: np.concatenate([dispatcher.run(b, route=r.index).logits for b in batches])
                  for r in m.routes}
        results = [dispatcher(b) for b in batches]
        gate_names = [m.routes[k].name for k in m.gate.routes]
        choice = np.array([m.gate.routes.index(int(r)) for res in results for r in res.routes])
        evaluation = summarize(y, routes, {r.name: r.macs for r in m.routes},
                               np.concatenate([r.logits for r in results]), choice, gate_names)
    print(f"{args.bundle} on {data.name} {args.split} ({evaluation.samples} samples)")
    print(format_evaluation(evaluation))
    if args.png:
        plot_evaluation(evaluation, args.png, f"{m.name} on {data.name} ({args.split})")
        print(f"wrote {args.png}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(evaluation.as_dict(), f, indent=1)
    return 0
