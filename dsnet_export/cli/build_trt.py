"""Add TensorRT plans to an existing bundle, built on this machine's GPU: one plan per engine in
trt/<device tag>/, weight-stripped and refitted from weights.safetensors when loaded (--full-plans keeps
the weights inside).  No torch needed: this is the command to run on the target device (a Jetson).
Without TensorRT, the CUDA bindings or a GPU it exits 1 naming what is missing.

`build --trt` exports a checkpoint and builds the plans in one step; `build --trt --bundle DIR` is
the same as `build-trt DIR`.

examples:
  python -m dsnet_export build-trt engines/dsmbnet --precision fp16 --max-batch 8
  python -m dsnet_export build-trt engines/dsmbnet --timing-cache trt.cache --json plans.json
  python -m dsnet_export verify engines/dsmbnet --backend trt
"""

from __future__ import annotations

import argparse

from ..errors import DsnetError
from ..tables import format_table, megabytes
from .options import Output, add_bundle_argument, add_output_group, add_trt_group

NAME = "build-trt"
HELP = "add TensorRT plans, built on this machine's GPU, to an existing bundle"
#: build_plans' parameters named otherwise than their flags.
PARAMETER_FLAGS = {"workspace_mib": "--workspace"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    inputs = p.add_argument_group("inputs")
    add_bundle_argument(inputs, "the bundle to add plans to (made by build, here or elsewhere)")
    add_trt_group(p)
    add_output_group(p, "a summary of the plans written")


def run(args: argparse.Namespace) -> int:
    out = Output(args)
    code, summary = build_plans_for(args, args.bundle, out)
    out.json(summary)
    return code


def trt_command(args: argparse.Namespace, bundle) -> str:
    """The command that builds these plans for ``bundle``."""
    parts = ["python -m dsnet_export build-trt", str(bundle), "--precision", args.precision,
             "--max-batch", str(args.max_batch)]
    if args.opt_batch:
        parts += ["--opt-batch", str(args.opt_batch)]
    if not args.strip:
        parts.append("--full-plans")
    return " ".join(parts)


def build_plans_for(args: argparse.Namespace, bundle, out: Output, *, exported: bool = False) -> tuple[int, dict]:
    """Build the plans (``build-trt``, ``build --trt``); prints the table, returns (exit code, JSON summary).

    ``exported``: the ONNX bundle was just written by ``build``, so a missing TensorRT or GPU is reported with
    the command to run on the target device."""
    from ..runtime.backends.trt.compat import TrtUnavailable
    from ..trt.plans import build_plans

    if not exported:
        from ..runtime import load_bundle

        load_bundle(bundle, verify=False)  # a wrong path is named as such, before TensorRT is looked for
    try:
        report = build_plans(bundle, precision=args.precision, max_batch=args.max_batch, opt_batch=args.opt_batch,
                             workspace_mib=args.workspace, timing_cache=args.timing_cache, strip=args.strip,
                             progress=out.progress)
    except TrtUnavailable as exc:
        if exported:
            raise DsnetError(f"{exc}. The ONNX bundle is ready at {bundle}; build the TensorRT plans on the target "
                             f"device with: {trt_command(args, bundle)}") from None
        raise DsnetError(f"{exc}. TensorRT plans are built on the device that will run them: run "
                         f"{trt_command(args, bundle)} there") from None
    plans = report.plans
    rows = [[e, p, megabytes(report.sizes[e]), f"{report.seconds[e]:.1f} s"] for e, p in plans.plans.items()]
    out.report(format_table(["engine", "plan", "size", "build time"], rows))
    kind = "weight-stripped (refitted from weights.safetensors at load)" if plans.stripped else "full"
    out.report(f"\n{kind} {plans.precision} plans for {report.device.gpu} "
               f"(sm{''.join(map(str, plans.compute_capability))}, TensorRT {plans.tensorrt_version}), "
               f"batch 1..{plans.max_batch} (opt {plans.opt_batch}), in {report.bundle}")
    out.report(f"check them: python -m dsnet_export verify {report.bundle} --backend trt")
    summary = {"bundle": str(report.bundle), "tag": plans.tag, "gpu": report.device.gpu,
               "compute_capability": list(plans.compute_capability), "tensorrt_version": plans.tensorrt_version,
               "precision": plans.precision, "stripped": plans.stripped, "max_batch": plans.max_batch,
               "opt_batch": plans.opt_batch,
               "plans": {e: {"plan": p, "bytes": report.sizes[e], "build_seconds": report.seconds[e]}
                         for e, p in plans.plans.items()}}
    return 0, summary
