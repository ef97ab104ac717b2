"""python -m training {supernet,gate,evaluate,export-digits}: train and evaluate DS-Nets.

examples (the embedded default model, about 5 minutes on 2 CPU cores):
  python -m training supernet --out runs/digits/supernet.safetensors
  python -m training gate --checkpoint runs/digits/supernet.safetensors --out runs/digits/dsnet.safetensors
  python -m training evaluate --checkpoint runs/digits/dsnet.safetensors --png runs/digits/eval.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from dsnet_export.errors import DsnetError

from .config import GateConfig, SupernetConfig


def _add_config(p: argparse.ArgumentParser, config_type) -> None:
    """One flag per hyper-parameter, defaults from the dataclass (booleans become --x / --no-x)."""
    for f in dataclasses.fields(config_type):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            p.add_argument(flag, dest=f.name, type=kind, default=f.default, help=f"default {f.default}")


def _config(args: argparse.Namespace, config_type):
    return config_type(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_type)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("supernet", "Stage I: supernet with In-place Ensemble Bootstrapping (--no-ieb: "
                                         "plain in-place distillation)"),
                            ("gate", "Stage II: gate with Sandwich Gate Sparsification on a frozen supernet")):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--dataset", default="digits", help="digits, or a folder of class sub-folders of images")
        p.add_argument("--out", type=Path, required=True, help="checkpoint to write (.safetensors)")
        p.add_argument("--resume", action="store_true", help="continue the run that wrote --out")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        if name == "gate":
            p.add_argument("--checkpoint", type=Path, required=True, help="the Stage I supernet")
        _add_config(p, SupernetConfig if name == "supernet" else GateConfig)
    p = sub.add_parser("evaluate", help="per-route and dynamic accuracy, MAdds and route histogram")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--png", type=Path, help="accuracy-vs-MAdds plot with the route histogram")
    p.add_argument("--json", type=Path, help="the numbers as JSON")
    p.add_argument("--seed", type=int, default=0, help="dataset split seed")
    p = sub.add_parser("export-digits", help="write a digits split as PNG images in class folders")
    p.add_argument("out", type=Path)
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except DsnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from dsnet_export.datasets import load_dataset

    if args.command == "export-digits":
        from .export_digits import export_split

        count = export_split(load_dataset("digits"), args.split, args.out)
        print(f"wrote {count} images to {args.out}")
        return 0
    if args.command == "evaluate":
        return _evaluate(args)
    from .loops import train_gate, train_supernet

    started = time.perf_counter()
    data = load_dataset(args.dataset, seed=args.seed)
    if args.command == "supernet":
        model = train_supernet(_config(args, SupernetConfig), data, args.out, resume=args.resume,
                               progress=not args.quiet)
    else:
        model = train_gate(_config(args, GateConfig), data, args.checkpoint, args.out, resume=args.resume,
                           progress=not args.quiet)
    from dsnet_export.evaluation import format_evaluation

    from .evaluate import evaluate_model, gate_accuracy

    print(f"\n{args.command} stage took {time.perf_counter() - started:.0f} s; validation split:")
    print(format_evaluation(evaluate_model(model, data, "val")))
    if args.command == "gate":
        print(f"gate accuracy vs SGS targets: {gate_accuracy(model, data, 'val'):.2%}")
    print(f"wrote {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from dsnet_export import load_supernet
    from dsnet_export.datasets import load_dataset
    from dsnet_export.evaluation import format_evaluation, plot_evaluation

    from .evaluate import evaluate_model, gate_accuracy

    model = load_supernet(args.checkpoint)
    data = load_dataset(args.dataset, seed=args.seed, size=model.spec.input.height)
    result = evaluate_model(model, data, args.split)
    print(f"{args.checkpoint} on {data.name} {args.split} ({result.samples} samples)")
    print(format_evaluation(result))
    print(f"gate accuracy vs SGS targets: {gate_accuracy(model, data, args.split):.2%}")
    if args.png:
        plot_evaluation(result, args.png, f"{model.spec.name} on {data.name} ({args.split})")
        print(f"wrote {args.png}")
    if args.json:
        args.json.write_text(json.dumps(result.as_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
