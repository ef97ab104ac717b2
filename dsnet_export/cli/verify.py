"""Check a bundle: every file's size and sha256 against the manifest, and, given the checkpoint it was
built from, every engine in ONNX Runtime against the torch supernet (a table of max abs differences).
Exits non-zero on any mismatch.
"""

from __future__ import annotations

import argparse

from .table import format_table

NAME = "verify"
HELP = "re-check hashes, and engines against the torch supernet given --checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="DIR", help="bundle directory")
    p.add_argument("--checkpoint", metavar="PATH", help="the supernet checkpoint to compare with (needs torch)")
    p.add_argument("--batch", type=int, default=4, help="random inputs to compare on (default 4)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from ..runtime import load_bundle

    bundle = load_bundle(args.bundle, verify=True)
    print(f"{bundle.root}: {len(bundle.manifest.files)} files match their sizes and sha256")
    if not args.checkpoint:
        return 0
    from ..export.verify import verify_against_checkpoint

    rows = verify_against_checkpoint(bundle, args.checkpoint, batch=args.batch, seed=args.seed)
    print(format_table(["engine", "route", "max |diff|", "tolerance", "ok"],
                       [[r.engine, r.route, f"{r.max_abs_diff:.2e}", f"{r.tolerance:.1e}", "yes" if r.ok else "NO"]
                        for r in rows]))
    failed = [r for r in rows if not r.ok]
    if failed:
        print(f"MISMATCH in {len(failed)} engine(s)")
        return 1
    return 0
