"""Check a bundle: every file's size and sha256 against the manifest; given the checkpoint it was
built from, every engine in ONNX Runtime against the torch supernet; with --backend trt (on the
target device), every TensorRT plan against ONNX Runtime on the CPU, on random inputs and any
--inputs you give.  Prints max absolute and relative differences; exits non-zero on any mismatch
(TensorRT tolerances: 1e-3 absolute for fp32 plans, 2e-2 relative for fp16).

examples:
  python -m dsnet_export verify engines/dsmbnet --checkpoint dsmbnet.pth.tar
  python -m dsnet_export verify engines/dsmbnet --backend trt --inputs samples/images/
"""

from __future__ import annotations

import argparse

from ..errors import DsnetError
from ..optional import install_hint

NAME = "verify"
HELP = "re-check hashes, and engines against the torch supernet given --checkpoint"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .argtypes import positive_int

    p.add_argument("bundle", metavar="DIR", help="bundle directory")
    p.add_argument("--checkpoint", metavar="PATH", help="the supernet checkpoint to compare with (needs torch)")
    p.add_argument("--backend", choices=["ort", "trt"], default="ort",
                   help="trt: compare this device's TensorRT plans with ONNX Runtime on the CPU")
    p.add_argument("--inputs", nargs="+", metavar="PATH", default=[],
                   help="images, folders or .npy/.npz to compare on as well (with --backend trt)")
    p.add_argument("--batch", type=positive_int, default=4, help="random inputs to compare on (default 4)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from ..runtime import load_bundle

    if args.checkpoint and args.backend == "ort":
        try:  # before any work: hashing a large bundle first only to fail here wastes the user's time
            from ..export.verify import verify_against_checkpoint
        except ImportError as exc:
            raise DsnetError(f"verify --checkpoint needs torch: {install_hint('torch')} ({exc})") from None
    bundle = load_bundle(args.bundle, verify=True)
    print(f"{bundle.root}: {len(bundle.manifest.files)} files match their sizes and sha256")
    if args.backend == "trt":
        return _verify_trt(bundle, args)
    if not args.checkpoint:
        return 0
    from ..runtime.compare import format_diffs

    rows = verify_against_checkpoint(bundle, args.checkpoint, batch=args.batch, seed=args.seed)
    print(format_diffs(rows))
    failed = [r for r in rows if not r.ok]
    if failed:
        print(f"MISMATCH in {len(failed)} engine(s)")
        return 1
    return 0


def _verify_trt(bundle, args: argparse.Namespace) -> int:
    import numpy as np

    from ..runtime import Dispatcher
    from ..runtime.compare import Tolerance, compare_dispatchers, format_diffs
    from ..runtime.inputs import iter_inputs

    shape = (args.batch, *bundle.manifest.input.shape)  # as export.parity.random_input, without torch
    batches = [("random", np.random.default_rng(args.seed).standard_normal(shape).astype(np.float32))]
    batches += [(item.name, item.array) for item in iter_inputs(args.inputs, bundle.manifest.input)]
    with Dispatcher.load(bundle.root, backend="trt", verify=False) as trt, \
            Dispatcher.load(bundle.root, verify=False) as ort:
        precision = trt.backend.plans.precision
        # fp32: 1e-3 absolute; fp16: 2 % of the largest reference logit.
        tolerance = Tolerance(atol=1e-3) if precision == "fp32" else Tolerance(atol=0.0, rtol=2e-2)
        print(f"TensorRT plans {trt.backend.plans.tag} ({precision}) vs ONNX Runtime CPU")
        failed = 0
        for name, x in batches:
            rows = compare_dispatchers(ort, trt, np.asarray(x, np.float32), tolerance)
            print(f"\n{name} ({x.shape[0]} samples)")
            print(format_diffs(rows))
            failed += sum(not r.ok for r in rows)
    if failed:
        print(f"MISMATCH in {failed} comparison(s)")
        return 1
    return 0
