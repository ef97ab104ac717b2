"""Check a bundle: every file's size and sha256 against the manifest; given the checkpoint it was
built from, every engine in ONNX Runtime against the torch supernet; with --backend trt (on the
target device) or openvino, every engine of that backend against ONNX Runtime on the CPU, on random
inputs and any --inputs you give.  Prints max absolute and relative differences; exits non-zero on any
mismatch (TensorRT: 1e-3 absolute for fp32 plans, 2e-2 relative for fp16; OpenVINO: 1e-4 absolute
(+1e-5 relative) in f32, 2e-2 relative in bf16/f16).  --json PATH|- also writes every difference as JSON.

examples:
  python -m dsnet_export verify engines/dsmbnet --checkpoint dsmbnet.pth.tar
  python -m dsnet_export verify engines/dsmbnet --checkpoint dsmbnet.pth.tar --samples 16 --json -
  python -m dsnet_export verify engines/dsmbnet --backend trt --inputs samples/images/
  python -m dsnet_export verify engines/dsmbnet --backend openvino --ov-device GPU
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

from ..errors import DsnetError
from ..optional import install_hint
from .options import DeprecatedAlias, Output, add_bundle_argument, add_output_group, add_runtime_group, open_dispatcher

NAME = "verify"
HELP = "re-check hashes, and engines against the torch supernet given --checkpoint (or TensorRT/OpenVINO vs ORT)"
#: Library parameters named otherwise than their flags.
PARAMETER_FLAGS = {"batch": "--samples"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .argtypes import positive_int

    inputs = p.add_argument_group("inputs")
    add_bundle_argument(inputs)
    inputs.add_argument("--checkpoint", metavar="PATH",
                        help="the supernet checkpoint to compare with (needs torch; default: hashes only)")
    inputs.add_argument("--inputs", nargs="+", metavar="PATH", default=[],
                        help="images, folders or .npy/.npz to compare on as well (with --backend trt or openvino; "
                             "default: random inputs only)")
    comparison = p.add_argument_group("comparison")
    comparison.add_argument("--samples", type=positive_int, default=4, metavar="N",
                            help="number of random inputs to compare on (default 4)")
    comparison.add_argument("--batch", dest="samples", type=positive_int, metavar="N", action=DeprecatedAlias,
                            use="--samples N", why="--batch is a batch size in run, eval and calibrate")
    comparison.add_argument("--seed", type=int, default=0, metavar="N",
                            help="seed of the random inputs (default 0)")
    add_runtime_group(p, providers=False, threads=False, verify=False,
                      backend_help="ort: the ONNX engines (against the torch supernet, given --checkpoint); trt: "
                                   "this device's TensorRT plans against ONNX Runtime on the CPU; openvino: OpenVINO "
                                   "against ONNX Runtime on the CPU (default ort)")
    add_output_group(p, "the hash check and every difference")


def run(args: argparse.Namespace) -> int:
    from ..runtime import load_bundle

    if args.checkpoint and args.backend == "ort":
        try:  # before any work: hashing a large bundle first only to fail here wastes the user's time
            from ..export.verify import verify_against_checkpoint
        except ImportError as exc:
            raise DsnetError(f"verify --checkpoint needs torch: {install_hint('torch')} ({exc})") from None
    out = Output(args)
    bundle = load_bundle(args.bundle, verify=True)
    out.report(f"{bundle.root}: {len(bundle.manifest.files)} files match their sizes and sha256")
    summary = {"bundle": str(bundle.root), "files": len(bundle.manifest.files), "files_ok": True,
               "backend": args.backend, "comparisons": []}
    if args.backend != "ort":
        failed = _verify_backend(bundle, args, out, summary)
    elif args.checkpoint:
        from ..runtime.compare import format_diffs

        rows = verify_against_checkpoint(bundle, args.checkpoint, batch=args.samples, seed=args.seed)
        out.report(format_diffs(rows))
        summary["comparisons"].append(_comparison(f"random vs {args.checkpoint}", args.samples, rows))
        failed = sum(not r.ok for r in rows)
        if failed:
            out.report(f"MISMATCH in {failed} engine(s)")
    else:
        failed = 0
    summary["ok"] = not failed
    out.json(summary)
    return 1 if failed else 0


def _comparison(name: str, samples: int, rows) -> dict:
    return {"inputs": name, "samples": samples, "engines": [{**asdict(r), "ok": r.ok} for r in rows]}


def _verify_backend(bundle, args: argparse.Namespace, out: Output, summary: dict) -> int:
    """TensorRT plans or OpenVINO engines vs ONNX Runtime on the CPU; the number of failed comparisons."""
    import numpy as np

    from ..runtime.compare import compare_dispatchers, format_diffs
    from ..runtime.inputs import iter_inputs

    shape = (args.samples, *bundle.manifest.input.shape)  # as export.parity.random_input, without torch
    batches = [("random", np.random.default_rng(args.seed).standard_normal(shape).astype(np.float32))]
    batches += [(item.name, item.array) for item in iter_inputs(args.inputs, bundle.manifest.input)]
    with open_dispatcher(args, bundle=bundle.root, verify=False) as other, \
            open_dispatcher(args, bundle=bundle.root, backend="ort", verify=False) as ort:
        what, precision, tolerance = _backend_tolerance(other.backend)
        out.report(f"{what} vs ONNX Runtime CPU")
        summary.update(engines=what, precision=precision)
        if args.backend == "trt":
            summary["plans"] = other.backend.plans.tag
        failed = 0
        for name, x in batches:
            rows = compare_dispatchers(ort, other, np.asarray(x, np.float32), tolerance)
            out.report(f"\n{name} ({x.shape[0]} samples)")
            out.report(format_diffs(rows))
            summary["comparisons"].append(_comparison(name, int(x.shape[0]), rows))
            failed += sum(not r.ok for r in rows)
    if failed:
        out.report(f"MISMATCH in {failed} comparison(s)")
    return failed


def _backend_tolerance(backend):
    """(what runs, its precision, the tolerance it must meet against ONNX Runtime's float32)."""
    from ..runtime.compare import Tolerance

    reduced = Tolerance(atol=0.0, rtol=2e-2)  # ~3 significant digits: 2 % of the largest reference logit
    if backend.name == "trt":
        precision = backend.plans.precision
        return (f"TensorRT plans {backend.plans.tag} ({precision})", precision,
                Tolerance(atol=1e-3) if precision == "fp32" else reduced)
    if backend.name == "openvino":
        precision = backend.options.precision
        return (f"OpenVINO on {backend.options.device} ({precision})", precision,
                Tolerance(atol=1e-4, rtol=1e-5) if precision == "f32" else reduced)
    if backend.name == "litert":
        converted = backend.manifest.format_engines("litert")
        return f"LiteRT engines ({converted.converter})", "fp32", Tolerance(atol=1e-4, rtol=1e-5)
    raise DsnetError(f"verify compares trt, openvino or litert with ONNX Runtime, not {backend.name!r}")
