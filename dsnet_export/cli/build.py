"""Build a bundle: gate.onnx + route_<k>.onnx sharing one weights.safetensors, plus manifest.json.

With no --checkpoint the embedded default model (DS-MBNet trained on scikit-learn's digits)
is exported to engines/dsnet-digits.  The finished bundle replaces --out only once every
engine has passed onnx.checker and matched the torch supernet in ONNX Runtime.

With --trt it then builds one TensorRT plan per engine on this machine's GPU (into
trt/<device tag>/, weight-stripped and refitted from weights.safetensors at load), as
`build-trt` does for an existing bundle (no torch needed: the command to run on a Jetson;
`build --trt --bundle DIR` still works and is the same).  Without TensorRT or a GPU the ONNX
bundle is still written, and the command exits non-zero naming what is missing and what to
run on the target.

examples:
  python -m dsnet_export build
  python -m dsnet_export build --checkpoint dsmbnet.pth.tar --out engines/dsmbnet
  python -m dsnet_export build --checkpoint ckpt.pth.tar --routes 0,1,2,3,uniform:8,largest --standalone
  python -m dsnet_export build --checkpoint dsmbnet.pth.tar --out engines/dsmbnet --trt --precision fp16
  python -m dsnet_export build-trt engines/dsmbnet --precision fp16 --max-batch 8
"""

from __future__ import annotations

import argparse

from ..errors import DsnetError
from ..optional import install_hint
from ..tables import format_table, megabytes, millions
from . import build_trt
from .build_trt import build_plans_for
from .options import Output, add_output_group, add_trt_group, output_group

NAME = "build"
HELP = "export a supernet checkpoint as a bundle of ONNX engines (and with --trt, TensorRT plans)"
#: Library parameters named otherwise than their flags (build_bundle's are named as theirs).
PARAMETER_FLAGS = dict(build_trt.PARAMETER_FLAGS)


def parse_size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H or H,W, got {text!r}") from None
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected H or H,W, got {text!r}")
    return (parts[0], parts[-1])


ROUTE_SYNTAX = "a gate index (0, 1, ...), 'uniform:k', 'smallest' or 'largest'"


def parse_routes(text: str) -> list[int | str]:
    """'0,1,2,3,uniform:8,largest' -> [0, 1, 2, 3, 'uniform:8', 'largest']; empty items, repeats and
    names that are no route of any architecture are errors (whether an index or width exists is
    checked against the checkpoint's architecture later)."""
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of routes, e.g. 0,1,2,3; got {text!r}")
    routes: list[int | str] = []
    for n, item in enumerate(items, 1):
        if not item:
            raise argparse.ArgumentTypeError(f"{text!r}: item {n} is empty (separate routes by single commas, "
                                             f"e.g. 0,1,2,3)")
        if item.isdigit():
            route: int | str = int(item)
        elif item in ("largest", "smallest") or (item.startswith("uniform:") and item[8:].isdigit()):
            route = item if not item.startswith("uniform:") else f"uniform:{int(item[8:])}"
        else:
            raise argparse.ArgumentTypeError(f"{text!r}: unknown route {item!r} (use {ROUTE_SYNTAX})")
        if route in routes:
            raise argparse.ArgumentTypeError(f"{text!r}: route {item!r} is listed twice")
        routes.append(route)
    return routes


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..arch import list_archs
    from .argtypes import output_dir

    inputs = p.add_argument_group("inputs")
    inputs.add_argument("--checkpoint", metavar="PATH",
                        help="official DS-Net .pth.tar, a bare state dict, or a dsnet-export .safetensors "
                             "(default: the embedded digits model)")
    inputs.add_argument("--arch", choices=list_archs(),
                        help="architecture (default: what the checkpoint declares); without --checkpoint, the "
                             "weights the package ships for it (ds_mbnet_digits, ds_resnet_digits)")
    inputs.add_argument("--random-weights", type=int, nargs="?", const=0, default=None, metavar="SEED",
                        help="export --arch with its initial (random, seeded) weights instead of a checkpoint: to "
                             "time an architecture nobody has trained yet, never for predictions (default: off; "
                             "seed 0 when given without SEED)")
    inputs.add_argument("--ema", action="store_true",
                        help="export an official checkpoint's EMA weights (default: the plain weights)")
    export = p.add_argument_group("export")
    export.add_argument("--routes", type=parse_routes, metavar="LIST",
                        help="routes to export: gate indexes (all of them), then optional forced widths "
                             "'uniform:k' and a fixed 'largest' (default: the gate's routes)")
    export.add_argument("--input-size", type=parse_size, metavar="H[,W]", help="input size (default: the arch's)")
    export.add_argument("--name", help="bundle name (default: from the checkpoint file name)")
    export.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset (default: 17)")
    export.add_argument("--standalone", action="store_true",
                        help="also write standalone/route_<k>.onnx: one self-contained file per route, weights "
                             "embedded (default: off)")
    export.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the ONNX Runtime vs torch parity check before the bundle is swapped in "
                             "(default: check)")
    output = output_group(p)
    output.add_argument("--out", type=output_dir, metavar="DIR", help="bundle directory (default: engines/<name>)")
    add_output_group(output, "a summary of the bundle written (files, routes, sizes, parity, plans)")
    from ..runtime.manifest import FORMATS
    from .argtypes import positive_int
    from .export_format import add_format_group

    add_format_group(p, FORMATS, positive_int, required=False)
    trt = p.add_argument_group("TensorRT (on the target device; for a bundle made before: build-trt DIR)")
    trt.add_argument("--trt", action="store_true",
                     help="also build TensorRT plans for this machine's GPU (default: off)")
    trt.add_argument("--bundle", metavar="DIR", help=argparse.SUPPRESS)  # build --trt --bundle DIR = build-trt DIR
    add_trt_group(trt)


def run(args: argparse.Namespace) -> int:
    out = Output(args)
    if args.bundle and not args.trt:
        raise DsnetError("--bundle only makes sense with --trt (or use: build-trt DIR)")
    if args.format_max_batch != 64 and not args.format:
        raise DsnetError("--format-max-batch only makes sense with --format")
    if args.bundle:
        code, summary = build_plans_for(args, args.bundle, out)
        out.json(summary)
        return code
    try:
        from ..export import build_bundle
        from ..export.build import DEFAULT_OPSET
    except ImportError as exc:
        raise DsnetError(f"build needs torch ({exc}): {install_hint('torch')}") from None
    if args.ema and not args.checkpoint:
        raise DsnetError("--ema needs --checkpoint")
    model, name = None, args.name
    if args.arch and not args.checkpoint and args.random_weights is None:
        from ..export.build import SHIPPED_WEIGHTS, shipped_weights

        if shipped_weights(args.arch) is None:
            shipped = sorted(p.stem for p in SHIPPED_WEIGHTS.glob("*.safetensors"))
            raise DsnetError(f"no trained weights ship for {args.arch!r} (shipped: {', '.join(shipped)}); pass "
                             f"--checkpoint PATH, or --random-weights to time the untrained architecture")
    if args.random_weights is not None:
        if args.checkpoint or not args.arch:
            raise DsnetError("--random-weights needs --arch and no --checkpoint")
        from ..export.build import random_supernet

        model, name = random_supernet(args.arch, args.random_weights), name or f"{args.arch}-random"
        out.note(f"{args.arch}: random initial weights (seed {args.random_weights}); for timing, not predictions")
    report = build_bundle(None if model else args.checkpoint, args.out, model=model, arch=None if model else args.arch,
                          routes=args.routes, input_size=args.input_size, opset=args.opset or DEFAULT_OPSET,
                          standalone=args.standalone, check=args.check, progress=out.progress, name=name,
                          ema=args.ema)
    m = report.manifest
    parity = {row.engine: row.max_abs for row in report.parity}
    rows = [[m.gate.file, "gate", "-", millions(m.gate.macs), "-", megabytes(m.files[m.gate.file].size),
             f"{parity[m.gate.file]:.1e}" if parity else "-"]]
    for r in m.routes:
        rows.append([r.file, f"{r.name} ({r.kind})", "/".join(map(str, r.widths)), millions(r.macs),
                     millions(r.params), megabytes(m.files[r.file].size),
                     f"{parity[r.file]:.1e}" if parity else "-"])
    rows.append([m.weights, "shared weights", "", "", "", megabytes(m.files[m.weights].size), ""])
    out.report(format_table(["file", "route", "widths", "MAdds", "params", "size", "max|diff| vs torch"], rows))
    s = report.sizes
    out.report(f"\nbundle {megabytes(s.bundle_bytes)} = {s.vs_widest:.3f} x the widest route's own tensors "
               f"({megabytes(s.widest_route_bytes)}); {s.vs_standalone:.3f} x the sum of standalone per-route "
               f"exports ({megabytes(s.standalone_bytes)})")
    out.report(f"wrote {report.path} in {report.seconds:.1f} s")
    if report.budget:
        out.report(report.budget)
    summary = {"bundle": str(report.path), "seconds": report.seconds,
               "gate": {"file": m.gate.file, "macs": m.gate.macs, "bytes": m.files[m.gate.file].size,
                        "max_abs_vs_torch": parity.get(m.gate.file)},
               "routes": [{"index": r.index, "name": r.name, "kind": r.kind, "widths": list(r.widths),
                           "macs": r.macs, "params": r.params, "file": r.file, "bytes": m.files[r.file].size,
                           "max_abs_vs_torch": parity.get(r.file)} for r in m.routes],
               "weights": {"file": m.weights, "bytes": m.files[m.weights].size},
               "sizes": {"bundle_bytes": s.bundle_bytes, "widest_route_bytes": s.widest_route_bytes,
                         "standalone_bytes": s.standalone_bytes, "vs_widest": s.vs_widest,
                         "vs_standalone": s.vs_standalone},
               "budget": report.budget, "trt": None, "format": None}
    code = 0
    if args.format:
        from .export_format import export_format_for

        out.report("")
        code, summary["format"] = export_format_for(args, report.path, out)
    if args.trt:
        code, summary["trt"] = build_plans_for(args, report.path, out, exported=True)
    out.json(summary)
    return code
