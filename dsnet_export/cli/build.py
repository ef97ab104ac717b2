"""Build a bundle: gate.onnx + route_<k>.onnx sharing one weights.safetensors, plus manifest.json.

With no --checkpoint the embedded default model (DS-MBNet trained on scikit-learn's digits)
is exported to engines/dsnet-digits.  The finished bundle replaces --out only once every
engine has passed onnx.checker and matched the torch supernet in ONNX Runtime.

examples:
  python -m dsnet_export build
  python -m dsnet_export build --checkpoint dsmbnet.pth.tar --out engines/dsmbnet
  python -m dsnet_export build --checkpoint ckpt.pth.tar --routes 0,1,2,3,uniform:8,largest --standalone
"""

from __future__ import annotations

import argparse

from ..errors import DsnetError
from .table import format_table, megabytes, millions

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


def parse_routes(text: str) -> list[int | str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of routes")
    return [int(t) if t.isdigit() else t for t in items]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..arch import list_archs

    p.add_argument("--checkpoint", metavar="PATH",
                   help="official DS-Net .pth.tar, a bare state dict, or a dsnet-export .safetensors "
                        "(default: the embedded digits model)")
    p.add_argument("--arch", choices=list_archs(), help="architecture (default: what the checkpoint declares)")
    p.add_argument("--ema", action="store_true", help="export an official checkpoint's EMA weights")
    p.add_argument("--routes", type=parse_routes, metavar="LIST",
                   help="routes to export: gate indexes (all of them), then optional forced widths "
                        "'uniform:k' and a fixed 'largest' (default: the gate's routes)")
    p.add_argument("--input-size", type=parse_size, metavar="H[,W]", help="input size (default: the arch's)")
    p.add_argument("--out", metavar="DIR", help="bundle directory (default: engines/<name>)")
    p.add_argument("--name", help="bundle name (default: from the checkpoint file name)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 17)")
    p.add_argument("--standalone", action="store_true",
                   help="also write standalone/route_<k>.onnx: one self-contained file per route (weights embedded)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the ONNX Runtime vs torch parity check before the bundle is swapped in")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        from ..export import build_bundle
        from ..export.build import DEFAULT_OPSET
    except ImportError as exc:
        raise DsnetError(f"build needs torch (pip install 'dsnet-export[export]'): {exc}") from None
    if args.ema and not args.checkpoint:
        raise DsnetError("--ema needs --checkpoint")
    report = build_bundle(args.checkpoint, args.out, arch=args.arch, routes=args.routes, input_size=args.input_size,
                          opset=args.opset or DEFAULT_OPSET, standalone=args.standalone, check=args.check,
                          progress=not args.quiet, name=args.name, ema=args.ema)
    m = report.manifest
    parity = {row.engine: row.max_abs_diff for row in report.parity}
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
    return 0
