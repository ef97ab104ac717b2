"""python -m training {supernet,gate,evaluate,export-digits}: train and evaluate DS-Nets.

examples (the embedded default model, about 5 minutes on 2 CPU cores):
  python -m training supernet --out runs/digits/supernet.safetensors
  python -m training gate --checkpoint runs/digits/supernet.safetensors --out runs/digits/dsnet.safetensors
  python -m training evaluate --checkpoint runs/digits/dsnet.safetensors --png runs/digits/eval.png
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from dsnet_export.cli import stdout_closed
from dsnet_export.cli.argtypes import output_path
from dsnet_export.errors import DsnetError
from dsnet_export.files import write_json_atomic

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
    """The stage's config from the flags, checked (``validate``) before any work; and --out must be a file."""
    config = config_type(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_type)}).validate()
    out = getattr(args, "out", None)
    if out is not None and Path(out).is_dir():
        raise DsnetError(f"--out {out}: is a directory; give the checkpoint file to write (.safetensors)")
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("supernet", "Stage I: supernet with In-place Ensemble Bootstrapping (--no-ieb: "
                                         "plain in-place distillation)"),
                            ("gate", "Stage II: gate with Sandwich Gate Sparsification on a frozen supernet")):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--dataset", default="digits", metavar="digits|FOLDER",
                       help="digits (built in), or a folder of class sub-folders of images (or of "
                            "train/val[/test] folders of class sub-folders), streamed from disk")
        p.add_argument("--out", type=Path, required=True, help="checkpoint to write (.safetensors)")
        p.add_argument("--resume", action="store_true", help="continue the run that wrote --out")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        if name == "gate":
            p.add_argument("--checkpoint", type=Path, required=True, help="the Stage I supernet")
            p.add_argument("--split-seed", type=int, default=None, metavar="N",
                           help="must match Stage I's (default: the seed the Stage I checkpoint records)")
        _add_config(p, SupernetConfig if name == "supernet" else GateConfig)
    p = sub.add_parser("evaluate", help="per-route and dynamic accuracy, MAdds and route histogram")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--dataset", default="digits", metavar="digits|FOLDER")
    p.add_argument("--split", choices=["all", "train", "val", "test"], default=None,
                   help="default: test for digits, the whole folder for a folder")
    p.add_argument("--png", type=output_path, help="accuracy-vs-MAdds plot with the route histogram")
    p.add_argument("--json", type=output_path, help="the numbers as JSON")
    p.add_argument("--split-seed", "--seed", dest="split_seed", type=int, default=None, metavar="N",
                   help="seed of the train/val/test draw (default: the one the checkpoint records, else 0)")
    p = sub.add_parser("export-digits", help="write a digits split as PNG images in class folders")
    p.add_argument("out", type=Path)
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    args = parser.parse_args(argv)
    try:
        code = _run(args)
        sys.stdout.flush()  # a closed pipe (| head) shows here, not at interpreter exit
        return code
    except DsnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return stdout_closed()


def _run(args: argparse.Namespace) -> int:
    if args.command == "export-digits":
        from dsnet_export.datasets import load_digits

        from .export_digits import export_split

        count = export_split(load_digits(), args.split, args.out)
        print(f"wrote {count} images to {args.out}")
        return 0
    if args.command == "evaluate":
        return _evaluate(args)
    from dsnet_export import load_supernet

    from .data import data_for_checkpoint, load_training_data, training_spec, warn_if_other_data
    from .loops import train_gate, train_supernet

    started = time.perf_counter()
    if args.command == "supernet":
        config = _config(args, SupernetConfig)
        source = args.out if args.resume and args.out.is_file() else None
        if source is None:
            data = load_training_data(args.dataset, config.arch, config.input_size, config.split_seed)
            spec = training_spec(config.arch, config.input_size, data.classes, args.dataset)
        else:  # the run being resumed fixed the spec and the split
            spec = load_supernet(source).spec
            data = data_for_checkpoint(args.dataset, spec, source, None)
        _check_classes(data, spec, source)
        model = train_supernet(config, data, args.out, spec=spec, resume=args.resume, progress=not args.quiet,
                               log=print)
    else:
        config = _config(args, GateConfig)
        spec = load_supernet(args.checkpoint).spec
        warn_if_other_data(args.dataset, args.checkpoint)
        data = data_for_checkpoint(args.dataset, spec, args.checkpoint, args.split_seed)
        _check_classes(data, spec, args.checkpoint)
        model = train_gate(config, data, args.checkpoint, args.out, resume=args.resume, progress=not args.quiet,
                           log=print)
    from dsnet_export.evaluation import format_evaluation

    from .evaluate import evaluate_model, gate_accuracy

    print(f"\n{args.command} stage took {time.perf_counter() - started:.0f} s; validation split:")
    print(format_evaluation(evaluate_model(model, data, "val")))
    if args.command == "gate":
        print(f"gate accuracy vs SGS targets: {gate_accuracy(model, data, 'val'):.2%}")
    print(f"wrote {args.out}")
    return 0


def _check_classes(data, spec, checkpoint: Path | None) -> None:
    """Training data must have exactly the classes the model's head was made for, in the same order."""
    from .data import recorded_data

    names = recorded_data(checkpoint).get("classes") if checkpoint is not None else None
    if names and list(data.classes) != list(names):
        raise DsnetError(f"{data.name}: classes {', '.join(data.classes[:6])}... are not the ones {checkpoint} "
                         f"was trained on ({', '.join(names[:6])}...)")
    if len(data.classes) != spec.num_classes:
        raise DsnetError(f"{data.name} has {len(data.classes)} classes but {checkpoint or spec.name} has "
                         f"{spec.num_classes} outputs")


def _evaluate(args: argparse.Namespace) -> int:
    from dsnet_export import load_supernet
    from dsnet_export.datasets import match_classes, resolve_split
    from dsnet_export.evaluation import format_evaluation, plot_evaluation

    from .data import data_for_checkpoint, recorded_data
    from .evaluate import evaluate_model, gate_accuracy

    model = load_supernet(args.checkpoint)
    data = data_for_checkpoint(args.dataset, model.spec, args.checkpoint, args.split_seed)
    split = resolve_split(data, args.split, str(args.dataset))
    mapping = match_classes(data.classes, recorded_data(args.checkpoint).get("classes", []), model.spec.num_classes,
                            data=str(args.dataset), model=str(args.checkpoint))
    result = evaluate_model(model, data, split, mapping=mapping)
    print(f"{args.checkpoint} on {data.name} {split} ({result.samples} samples)")
    print(format_evaluation(result))
    print(f"gate accuracy vs SGS targets: {gate_accuracy(model, data, split, mapping=mapping):.2%}")
    if args.png:
        plot_evaluation(result, args.png, f"{model.spec.name} on {data.name} ({split})")
        print(f"wrote {args.png}")
    if args.json:
        write_json_atomic(args.json, result.as_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
