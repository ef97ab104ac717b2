"""Add the bundle's engines in another runtime's own format: LiteRT (.tflite, phones and small Linux boards).
Every engine (the gate, each route) is converted from a torch supernet rebuilt from the bundle's own weights (no
checkpoint needed), run against it before anything is written, and recorded in the manifest with its size and
sha256 under litert/; the bundle is updated atomically.  Converted engines carry their own weights (BatchNorm
folded per width): `inspect` shows their sizes.  Needs torch and litert-torch (pip install 'dsnet-export[export,
litert-export]'); running them needs only ai-edge-litert ('dsnet-export[litert]').

examples:
  python -m dsnet_export export-format engines/dsnet-digits --format litert
  python -m dsnet_export run engines/dsnet-digits images/ --backend litert
  python -m dsnet_export bench engines/dsnet-digits --backend litert
"""

from __future__ import annotations

import argparse

from ..errors import DsnetError
from ..optional import install_hint
from ..tables import format_table, megabytes
from .options import Output, add_bundle_argument, add_output_group

NAME = "export-format"
HELP = "add the bundle's engines converted to LiteRT (.tflite), checked against torch"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..runtime.manifest import FORMATS
    from .argtypes import positive_int

    inputs = p.add_argument_group("inputs")
    add_bundle_argument(inputs, "the bundle to add converted engines to (made by build)")
    add_format_group(p, FORMATS, positive_int)
    add_output_group(p, "a summary of the converted engines")


def add_format_group(p, formats, positive_int, *, required: bool = True) -> None:
    group = p.add_argument_group("format")
    group.add_argument("--format", choices=formats, required=required, default=None,
                       help="the runtime format to convert every engine to" + (" (required)" if required else
                                                                              " (default: none)"))
    group.add_argument("--format-max-batch", dest="format_max_batch", type=positive_int, default=64, metavar="N",
                       help="largest batch the converted engines take; the batch dimension is dynamic up to it "
                            "(default 64)")


def run(args: argparse.Namespace) -> int:
    out = Output(args)
    code, summary = export_format_for(args, args.bundle, out)
    out.json(summary)
    return code


def export_format_for(args: argparse.Namespace, bundle, out: Output) -> tuple[int, dict]:
    """Convert and record (``export-format``, ``build --format``); prints the table, returns (code, summary)."""
    try:
        from ..export.formats import export_format
    except ImportError as exc:
        raise DsnetError(f"export-format needs torch ({exc}): {install_hint('torch')}") from None
    if args.format_max_batch < 2:
        raise DsnetError("--format-max-batch must be at least 2")
    report = export_format(bundle, args.format, max_batch=args.format_max_batch, progress=out.progress)
    diffs = {row.engine: row.max_abs for row in report.parity}
    rows = [[engine, converted, megabytes(report.sizes[engine]), f"{report.seconds[engine]:.1f} s",
             f"{diffs[engine]:.1e}"] for engine, converted in report.engines.engines.items()]
    out.report(format_table(["engine", args.format, "size", "converted in", "max|diff| vs torch"], rows))
    total = sum(report.sizes.values())
    out.report(f"\n{args.format}: {megabytes(total)} in {len(rows)} files, each with its own weights; batch 1.."
               f"{report.engines.max_batch}; {report.engines.converter}; recorded in {report.bundle}")
    return 0, {"bundle": str(report.bundle), "format": args.format, "converter": report.engines.converter,
               "max_batch": report.engines.max_batch, "files": report.engines.engines, "sizes": report.sizes,
               "seconds": report.seconds, "max_abs_diff": diffs}
