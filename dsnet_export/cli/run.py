"""Run a bundle on images, image folders or .npy/.npz arrays with the ONNX Runtime dispatcher.

Prints, per sample, the top-5 classes (softmax probability; class names from --labels or the
manifest, else class indices), the route it took, its MAdds and the latency of its batch, then a
summary: samples, route histogram, average MAdds, throughput and skipped inputs.  Images are
preprocessed as the manifest says and sent one per call, or --batch N consecutive images per call;
arrays are taken as preprocessed ([C,H,W] or [N,C,H,W]; each array of an .npz is one batch, as given).
--json PATH writes logits, routes and MAdds per input; --json - writes them to stdout instead of the
printed lines.

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
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DsnetError
from ..runtime.postprocess import top_k
from .options import Output, add_bundle_argument, add_output_group, add_runtime_group, open_dispatcher, output_group

if TYPE_CHECKING:
    from ..runtime.inputs import InputBatch

NAME = "run"
HELP = "run a bundle on images or arrays and print top-5 classes, routes and MAdds"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .argtypes import positive_int

    inputs = p.add_argument_group("inputs")
    add_bundle_argument(inputs)
    inputs.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, folders of images, .npy or .npz")
    inputs.add_argument("--strict", action="store_true",
                        help="stop at the first unreadable image instead of skipping it (default: skip it)")
    dispatch = p.add_argument_group("dispatch")
    dispatch.add_argument("--route", default=None,
                          help="force every sample through this route, by index or name, e.g. 0 or largest "
                               "(default: the gate's choice)")
    dispatch.add_argument("--policy", choices=["per-sample", "whole-batch"], default="per-sample",
                          help="per-sample routing, or the widest chosen route for the whole batch "
                               "(default per-sample)")
    dispatch.add_argument("--budget", nargs="?", const=True, default=None, metavar="FILE",
                          help="apply the gate bias from calibrate; FILE defaults to DIR/budget.json "
                               "(default: no bias)")
    dispatch.add_argument("--batch", type=positive_int, default=1, metavar="N",
                          help="batch size: send N consecutive images per dispatcher call (default 1; arrays go "
                               "as given)")
    add_runtime_group(p)
    output = output_group(p)
    output.add_argument("--top", type=positive_int, default=5, metavar="K",
                        help="classes to print per sample (default 5)")
    output.add_argument("--labels", metavar="FILE",
                        help="class names, one per line (default: the manifest's, or indices)")
    add_output_group(output, "logits, routes and MAdds per input and the summary")


def run(args: argparse.Namespace) -> int:
    from ..runtime import RunStats
    from ..runtime.inputs import iter_inputs
    from ..runtime.labels import bundle_labels

    if args.batch < 1:
        raise DsnetError("--batch must be at least 1")
    route = int(args.route) if args.route is not None and args.route.isascii() and args.route.isdigit() else args.route
    results = {}
    out = Output(args)
    with open_dispatcher(args, policy=args.policy, budget=args.budget) as dispatcher:
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
                if out.json_on_stdout:
                    continue
                for n, i in enumerate(range(rows.start, rows.stop)):
                    label = item.name if count == 1 else f"{item.name}[{n}]"
                    out.report(f"{label}: route {result.routes[i]} ({names[result.routes[i]]}), "
                               f"{result.macs[i] / 1e6:.2f}M MAdds, {latency:.1f} ms/batch, top-{args.top}: "
                               f"{_top(result.logits[i], args.top, labels)}")
    if not stats.samples and stats.skipped:
        raise DsnetError(f"no readable inputs: all {stats.skipped} images were skipped")
    out.report(f"\n{stats.summary('samples')}")
    out.json({"bundle": str(args.bundle), "inputs": results, "summary": stats.as_dict()})
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
