"""Build a bundle: gate.onnx + route_<k>.onnx sharing one weights.safetensors, plus manifest.json.

With no --checkpoint the embedded default model (DS-MBNet trained on scikit-learn's digits)
is exported to engines/dsnet-digits.  The finished bundle replaces --out only once every
engine has passed onnx.checker and matched the torch supernet in ONNX Runtime.

With --trt it then builds one TensorRT plan per engine on this machine's GPU (into
trt/<device tag>/, weight-stripped and refitted from weights.safetensors at load).  With
--bundle it adds plans to an existing bundle without re-exporting (no torch needed: this is
the command to run on a Jetson).  Without TensorRT or a GPU the ONNX bundle is still written,
and the command exits non-zero naming what is missing and what to run on the target.

examples:
  python -m dsnet_export build
  python -m dsnet_export build --checkpoint dsmbnet.pth.tar --out engines/dsmbnet
  python -m dsnet_export build --checkpoint ckpt.pth.tar --routes 0,1,2,3,uniform:8,largest --standalone
  python -m dsnet_export build --trt --bundle engines/dsmbnet --precision fp16 --max-batch 8
"""

from __future__ import annotations

import argparse

from ..errors import DsnetError
from ..optional import install_hint
from ..tables import format_table, megabytes, millions

NAME = "build"
HELP = "export a supernet checkpoint as a bundle of ONNX engines"


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
    from .argtypes import output_dir, positive_int

    p.add_argument("--checkpoint", metavar="PATH",
                   help="official DS-Net .pth.tar, a bare state dict, or a dsnet-export .safetensors "
                        "(default: the embedded digits model)")
    p.add_argument("--arch", choices=list_archs(), help="architecture (default: what the checkpoint declares)")
    p.add_argument("--ema", action="store_true", help="export an official checkpoint's EMA weights")
    p.add_argument("--routes", type=parse_routes, metavar="LIST",
                   help="routes to export: gate indexes (all of them), then optional forced widths "
                        "'uniform:k' and a fixed 'largest' (default: the gate's routes)")
    p.add_argument("--input-size", type=parse_size, metavar="H[,W]", help="input size (default: the arch's)")
    p.add_argument("--out", type=output_dir, metavar="DIR", help="bundle directory (default: engines/<name>)")
    p.add_argument("--name", help="bundle name (default: from the checkpoint file name)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 17)")
    p.add_argument("--standalone", action="store_true",
                   help="also write standalone/route_<k>.onnx: one self-contained file per route (weights embedded)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the ONNX Runtime vs torch parity check before the bundle is swapped in")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    trt = p.add_argument_group("TensorRT (on the target device)")
    trt.add_argument("--trt", action="store_true", help="also build TensorRT plans for this machine's GPU")
    trt.add_argument("--bundle", metavar="DIR", help="add plans to this existing bundle instead of exporting")
    trt.add_argument("--precision", choices=["fp32", "fp16"], default="fp32", help="plan precision (default fp32)")
    trt.add_argument("--max-batch", type=positive_int, default=8, help="largest batch the plans accept (default 8)")
    trt.add_argument("--opt-batch", type=positive_int, default=None,
                     help="batch the kernels are tuned for (default: max)")
    trt.add_argument("--workspace", type=positive_int, default=1024, metavar="MiB",
                     help="builder workspace (default 1024)")
    trt.add_argument("--timing-cache", metavar="PATH", help="read and update a TensorRT timing cache file")
    trt.add_argument("--full-plans", dest="strip", action="store_false",
                     help="keep the weights inside the plans (no refit at load; stores them twice)")


def run(args: argparse.Namespace) -> int:
    if args.bundle and not args.trt:
        raise DsnetError("--bundle only makes sense with --trt")
    if args.bundle:
        return _build_trt(args, args.bundle)
    try:
        from ..export import build_bundle
        from ..export.build import DEFAULT_OPSET
    except ImportError as exc:
        raise DsnetError(f"build needs torch ({exc}): {install_hint('torch')}") from None
    if args.ema and not args.checkpoint:
        raise DsnetError("--ema needs --checkpoint")
    report = build_bundle(args.checkpoint, args.out, arch=args.arch, routes=args.routes, input_size=args.input_size,
                          opset=args.opset or DEFAULT_OPSET, standalone=args.standalone, check=args.check,
                          progress=not args.quiet, name=args.name, ema=args.ema)
    m = report.manifest
    parity = {row.engine: row.max_abs for row in report.parity}
    rows = [[m.gate.file, "gate", "-", millions(m.gate.macs), "-", megabytes(m.files[m.gate.file].size),
             f"{parity[m.gate.file]:.1e}" if parity else "-"]]
    for r in m.routes:
        rows.append([r.file, f"{r.name} ({r.kind})", "/".join(map(str, r.widths)), millions(r.macs),
                     millions(r.params), megabytes(m.files[r.file].size),
                     f"{parity[r.file]:.1e}" if parity else "-"])
    rows.append([m.weights, "shared weights", "", "", "", megabytes(m.files[m.weights].size), ""])
    print(format_table(["file", "route", "widths", "MAdds", "params", "size", "max|diff| vs torch"], rows))
    s = report.sizes
    print(f"\nbundle {megabytes(s.bundle_bytes)} = {s.vs_widest:.3f} x the widest route's own tensors "
          f"({megabytes(s.widest_route_bytes)}); {s.vs_standalone:.3f} x the sum of standalone per-route exports "
          f"({megabytes(s.standalone_bytes)})")
    print(f"wrote {report.path} in {report.seconds:.1f} s")
    if report.budget:
        print(report.budget)
    return _build_trt(args, report.path) if args.trt else 0


def _trt_command(args: argparse.Namespace, bundle) -> str:
    parts = ["python -m dsnet_export build --trt --bundle", str(bundle), "--precision", args.precision,
             "--max-batch", str(args.max_batch)]
    if args.opt_batch:
        parts += ["--opt-batch", str(args.opt_batch)]
    if not args.strip:
        parts.append("--full-plans")
    return " ".join(parts)


def _build_trt(args: argparse.Namespace, bundle) -> int:
    from ..trt.compat import TrtUnavailable
    from ..trt.plans import build_plans

    try:
        report = build_plans(bundle, precision=args.precision, max_batch=args.max_batch, opt_batch=args.opt_batch,
                             workspace_mib=args.workspace, timing_cache=args.timing_cache, strip=args.strip,
                             progress=not args.quiet)
    except TrtUnavailable as exc:
        raise DsnetError(f"{exc}. The ONNX bundle is ready at {bundle}; build the TensorRT plans on the target "
                         f"device with: {_trt_command(args, bundle)}") from None
    plans = report.plans
    rows = [[e, p, megabytes(report.sizes[e]), f"{report.seconds[e]:.1f} s"] for e, p in plans.plans.items()]
    print(format_table(["engine", "plan", "size", "build time"], rows))
    kind = "weight-stripped (refitted from weights.safetensors at load)" if plans.stripped else "full"
    print(f"\n{kind} {plans.precision} plans for {report.device.gpu} (sm{''.join(map(str, plans.compute_capability))}, "
          f"TensorRT {plans.tensorrt_version}), batch 1..{plans.max_batch} (opt {plans.opt_batch}), in {report.bundle}")
    print(f"check them: python -m dsnet_export verify {report.bundle} --backend trt")
    return 0
