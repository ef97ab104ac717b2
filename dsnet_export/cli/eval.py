"""Evaluate a bundle on a labelled dataset through the dispatcher: accuracy and MAdds of every route,
the gate's dynamic accuracy and average MAdds, and the route histogram; optionally a PNG of accuracy
vs MAdds (each route and the dynamic point, as DS-Net's Figure 1) with the histogram.

--dataset digits (scikit-learn's bundled digits with graded corruptions; its test split by default)
or a folder of class sub-folders of images (scored whole unless --split is given; the split seed is
the one recorded at training).  Images are decoded and preprocessed exactly as `run` does, from the
bundle's manifest; class folders are matched to the bundle's class names.

examples:
  python -m dsnet_export eval engines/dsnet-digits --dataset digits --png eval.png
  python -m training export-digits digits_test/
  python -m dsnet_export eval engines/dsnet-digits --dataset digits_test/     # the same images, from PNG files
  python -m dsnet_export eval engines/dsnet-digits --dataset digits_test/ --split test --json eval.json
"""

from __future__ import annotations

import argparse

import numpy as np

from .options import (
    DeprecatedAlias,
    Output,
    add_bundle_argument,
    add_output_group,
    add_runtime_group,
    open_dispatcher,
    output_group,
)

NAME = "eval"
HELP = "per-route and dynamic accuracy, MAdds and route histogram on a labelled dataset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .argtypes import output_file, positive_int

    inputs = p.add_argument_group("inputs")
    add_bundle_argument(inputs)
    inputs.add_argument("--dataset", default="digits", metavar="digits|FOLDER",
                        help="digits (built in), or a folder of class sub-folders of images (or of train/val/test "
                             "folders of class sub-folders) (default digits)")
    inputs.add_argument("--split", choices=["all", "train", "val", "test"], default=None,
                        help="which part to score (default: test for digits, the whole folder for a folder)")
    inputs.add_argument("--split-seed", dest="split_seed", type=int, default=None, metavar="N",
                        help="seed of the train/val/test draw (default: the one recorded at training, else 0)")
    inputs.add_argument("--seed", dest="split_seed", type=int, metavar="N", action=DeprecatedAlias,
                        use="--split-seed N", why="--seed seeds the random inputs in bench and verify")
    inputs.add_argument("--labels", metavar="FILE",
                        help="the model's class names, one per line, to match class folders by name "
                             "(default: the names the bundle records)")
    dispatch = p.add_argument_group("dispatch")
    dispatch.add_argument("--batch", type=positive_int, default=64, metavar="N", help="batch size (default 64)")
    dispatch.add_argument("--budget", nargs="?", const=True, default=None, metavar="FILE",
                          help="apply the gate bias from calibrate; FILE defaults to DIR/budget.json "
                               "(default: no bias)")
    add_runtime_group(p)
    output = output_group(p)
    output.add_argument("--png", type=output_file, metavar="PATH",
                        help="write the accuracy-vs-MAdds plot (needs matplotlib; default: none)")
    add_output_group(output, "the numbers")


def run(args: argparse.Namespace) -> int:
    from ..datasets import load_dataset, match_classes, resolve_split
    from ..evaluation import Tally, format_evaluation, plot_evaluation
    from ..imaging import Preprocessing
    from ..runtime.labels import load_labels

    out = Output(args)
    with open_dispatcher(args, budget=args.budget) as dispatcher:
        m = dispatcher.manifest
        prep = Preprocessing.from_manifest(m.input)
        seed = args.split_seed if args.split_seed is not None else (m.split_seed or 0)  # as training split it
        data = load_dataset(args.dataset, prep, split_seed=seed)
        split = resolve_split(data, args.split, str(args.dataset))
        num_classes = int(m.arch["num_classes"])
        labels = load_labels(args.labels, num_classes) if args.labels else m.labels
        mapping = match_classes(data.classes, labels, num_classes, data=str(args.dataset), model=str(args.bundle))
        gate_names = [m.routes[k].name for k in m.gate.routes]
        gate_of = np.zeros(len(m.routes), np.int64)
        gate_of[m.gate.routes] = np.arange(len(m.gate.routes))
        tally = Tally({r.name: r.macs for r in m.routes}, gate_names)
        for x, y in data.batches(split, args.batch):
            result = dispatcher(x)
            tally.add(mapping[y], {r.name: dispatcher.run(x, route=r.index).logits for r in m.routes},
                      result.logits, gate_of[result.routes])
    evaluation = tally.result()
    out.report(f"{args.bundle} on {data.name} {split} ({evaluation.samples} samples; "
               f"preprocessing: {prep.describe()})")
    out.report(format_evaluation(evaluation))
    if args.png:
        plot_evaluation(evaluation, args.png, f"{m.name} on {data.name} ({split})")
        out.note(f"wrote {args.png}")
    out.json({**evaluation.as_dict(), "dataset": str(args.dataset), "split": split})
    return 0
