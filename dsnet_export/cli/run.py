"""Run a bundle on images, image folders or .npy/.npz arrays with the ONNX Runtime dispatcher.

Prints, per sample, the top-5 classes (softmax probability; class names from --labels or the
manifest, else class indices), the route it took, its MAdds and the latency of its batch, then a
summary: samples, route histogram, average MAdds, throughput and skipped inputs.  Images are
preprocessed as the manifest says and sent one per call, or --batch N consecutive images per call;
arrays are taken as preprocessed ([C,H,W] or [N,C,H,W]; each array of an .npz is one batch, as given).

An unreadable image inside a folder (or among several named inputs) is skipped with a warning on
stderr and counted in the summary; --strict stops at the first one instead (exit 1).  A single
image file that cannot be read is always an error.

examples (the first two commands make the files the others use):
  python -m dsnet_export build                                 # the embedded digits model -> engines/dsnet-digits
  python -m training export-digits digits_test/                # the digits test split as PNGs, folders 0..9
  python -m dsnet_export run engines/dsnet-digits digits_test/3
  python -m dsnet_export run engines/dsnet-digits digits_test/ --batch 8 --top 1 --json results.json
  python -m dsnet_export run engines/dsnet-digits digits_test/3 digits_test/8 --route largest --strict
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DsnetError
from ..files import write_text_atomic
from ..runtime.postprocess import top_k

if TYPE_CHECKING:
    from ..runtime.inputs import InputBatch

NAME = "run"
HELP = "run a bundle on images or arrays and print top-5 classes, routes and MAdds"


def add_runtime_arguments(p: argparse.ArgumentParser) -> None:
    """Options every dispatcher-backed command shares."""
    from .argtypes import thread_count

    p.add_argument("--providers", default=None, help="ONNX Runtime providers, e.g. cpu or cuda,cpu (default cpu)")
    p.add_argument("--threads", type=thread_count, default=None,
                   help="intra-op threads per session, at least 1 (default: ORT's)")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the sha256 check on load")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .argtypes import output_file_or_stdout, positive_int

    p.add_argument("bundle", metavar="DIR", help="bundle directory")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, folders of images, .npy or .npz")
    p.add_argument("--route", default=None,
                   help="force every sample through this route (index or name, e.g. 0 or largest)")
    p.add_argument("--policy", choices=["per-sample", "whole-batch"], default="per-sample",
                   help="per-sample routing (default) or the widest chosen route for the whole batch")
    p.add_argument("--budget", nargs="?", const=True, default=None, metavar="FILE",
                   help="apply the gate bias from calibrate (default file: DIR/budget.json)")
    p.add_argument("--top", type=positive_int, default=5, help="classes to print per sample (default 5)")
    p.add_argument("--json", type=output_file_or_stdout, metavar="PATH",
                   help="write logits, routes and MAdds per input as JSON ('-': stdout)")
    p.add_argument("--batch", type=positive_int, default=1, metavar="N",
                   help="send N consecutive images per dispatcher call (default 1; arrays go as given)")
    p.add_argument("--labels", metavar="FILE", help="class names, one per line (default: the manifest's, or indices)")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image instead of skipping it")
    add_runtime_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ..runtime import Dispatcher, RunStats
    from ..runtime.inputs import iter_inputs
    from ..runtime.labels import bundle_labels

    if args.batch < 1:
        raise DsnetError("--batch must be at least 1")
    route = int(args.route) if args.route is not None and args.route.isdigit() else args.route
    results = {}
    quiet = args.json == "-"  # stdout carries the JSON only
    with Dispatcher.load(args.bundle, providers=args.providers, threads=args.threads, verify=args.verify,
                         policy=args.policy, budget=args.budget) as dispatcher:
        names = [r.name for r in dispatcher.routes]
        labels = bundle_labels(dispatcher.manifest, args.labels)
        stats = RunStats(dispatcher.routes)
        items = iter_inputs(args.inputs, dispatcher.manifest.input, on_error=None if args.strict else stats.skip)
        for group in _batches(items, args.batch):
            array = group[0].array if len(group) == 1 else np.concatenate([item.array for item in group])
            start = time.perf_counter()
            try:
                result = dispatcher.run(array, route)
            except ValueError as exc:  # the dispatcher's input checks: a user error here
                where = group[0].name if len(group) == 1 else f"{group[0].name} .. {group[-1].name}"
                raise DsnetError(f"{where}: {exc}") from None
            seconds = time.perf_counter() - start
            stats.add(result.routes, result.macs, seconds)
            latency = seconds * 1e3
            first = 0
            for item in group:
                count = item.array.shape[0]
                rows, first = slice(first, first + count), first + count
                results[item.name] = {"logits": result.logits[rows].tolist(), "routes": result.routes[rows].tolist(),
                                      "macs": result.macs[rows].tolist(), "latency_ms": latency}
                if quiet:
                    continue
                for n, i in enumerate(range(rows.start, rows.stop)):
                    label = item.name if count == 1 else f"{item.name}[{n}]"
                    print(f"{label}: route {result.routes[i]} ({names[result.routes[i]]}), "
                          f"{result.macs[i] / 1e6:.2f}M MAdds, {latency:.1f} ms/batch, top-{args.top}: "
                          f"{_top(result.logits[i], args.top, labels)}")
    if not stats.samples and stats.skipped:
        raise DsnetError(f"no readable inputs: all {stats.skipped} images were skipped")
    if not quiet:
        print(f"\n{stats.summary('samples')}")
    if args.json:
        text = json.dumps({"bundle": str(args.bundle), "inputs": results, "summary": stats.as_dict()}, indent=1)
        if args.json == "-":
            sys.stdout.write(text + "\n")
        else:
            write_text_atomic(args.json, text + "\n")
    return 0


def _batches(items: Iterable[InputBatch], size: int) -> Iterator[list[InputBatch]]:
    """Consecutive decoded images in groups of up to ``size``; every array alone, as it was given."""
    group: list[InputBatch] = []
    for item in items:
        if not item.image:
            if group:
                yield group
                group = []
            yield [item]
            continue
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _top(logits: np.ndarray, k: int, labels: list[str]) -> str:
    return ", ".join(f"{labels[c]} ({p:.3f})" for c, p in top_k(logits, k))
