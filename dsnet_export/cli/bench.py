"""Benchmark a bundle on this machine with ONNX Runtime (CPU), timed as a user's loop calls it: blocks of
back-to-back calls, every contender's blocks interleaved round by round, medians and paired ratios.

  (a) overhead: gate + route k through the dispatcher vs one monolithic ONNX of subnet k (same weights), with
      the dispatcher's fixed per-call cost and the one-session design (gate + routes fused with If nodes);
  (b) a batch mixing the gate's routes: per-sample dispatch vs the official masking (full width, channels
      beyond each sample's route zeroed, per-sample BN), in PyTorch (needs torch) and exported to ONNX;
  (c) route efficiency: narrowest-to-widest latency ratio vs the MAdds ratio;
  (d) memory and cold start of the dispatcher vs one standalone ONNX per route, in fresh processes;
  (e) end to end on labelled data (--labelled, default digits): the dynamic network at batch 1 and 8 vs each
      static route and the oracle mix (each sample's chosen route as a static model): accuracy, mean and p95
      latency, and how much of the MAdds saving becomes a latency saving.

Prints medians; --json PATH|- keeps every raw number, --png draws latency vs MAdds and accuracy vs latency.

With --backend openvino (or another registered backend): that backend against ONNX Runtime on the same bundle
instead, each gate route forced and the dynamic network, at every batch size, ratios of interleaved blocks.

examples:
  python -m dsnet_export bench engines/dsnet-digits --png bench.png
  python -m dsnet_export bench engines/dsmbnet --rounds 30 --json bench.json --png bench.png
  python -m dsnet_export bench engines/mymodel --labelled val_images/ --e2e-samples 500
  python -m dsnet_export bench engines/dsmbnet --batch-sizes 1,4,16 --threads 1 --no-torch --skip-memory
  python -m dsnet_export bench engines/dsmbnet --backend openvino --rounds 9
"""

from __future__ import annotations

import argparse

from ..errors import DsnetError
from .options import Output, add_bundle_argument, add_output_group, add_runtime_group, output_group

NAME = "bench"
HELP = "benchmark a bundle: dispatcher overhead, mixed batch vs masking, efficiency, memory, end to end"
#: BenchSettings fields named otherwise than their flags.
PARAMETER_FLAGS = {"block_seconds": "--block-ms"}


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated batch sizes, e.g. 1,8; got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {text!r}")
    return sizes


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..bench.settings import BenchSettings
    from .argtypes import output_file

    default = BenchSettings()
    inputs = p.add_argument_group("inputs")
    add_bundle_argument(inputs)
    inputs.add_argument("--data", nargs="+", default=[], metavar="PATH",
                        help="images, folders or .npy/.npz arrays to pick the mixed batch from (default: synthetic "
                             "images)")
    inputs.add_argument("--labelled", default=default.labelled, metavar="DATA",
                        help="labelled data for the end-to-end section: digits, or a folder of class sub-folders of "
                             "images (preprocessed as the bundle's manifest says); skipped with a note when its "
                             f"classes or image size do not fit the bundle (default {default.labelled})")
    inputs.add_argument("--seed", type=int, default=default.seed, metavar="N",
                        help=f"seed of the random and synthetic inputs (default {default.seed})")
    timing = p.add_argument_group("timing")
    timing.add_argument("--rounds", type=int, default=default.rounds, metavar="N",
                        help=f"timed rounds; each runs one block of every contender (default {default.rounds})")
    timing.add_argument("--warmup", type=int, default=default.warmup, metavar="N",
                        help=f"untimed calls at the start of every block (default {default.warmup})")
    timing.add_argument("--block-ms", type=float, default=default.block_seconds * 1e3, metavar="MS",
                        help=f"length of a block of timed back-to-back calls, 3 to 50 calls (default "
                             f"{default.block_seconds * 1e3:g})")
    timing.add_argument("--batch-sizes", type=parse_batch_sizes, default=default.batch_sizes, metavar="LIST",
                        help=f"batch sizes (default {','.join(map(str, default.batch_sizes))}); the mixed-batch "
                             f"comparison runs at every size above 1")
    timing.add_argument("--idle-wait-ms", type=float, default=default.idle_wait * 1e3, metavar="MS",
                        help="before each block, wait up to this long for the previous contender's spinning threads "
                             f"to go idle (default {default.idle_wait * 1e3:.0f}; 0 turns it off)")
    sections = p.add_argument_group("sections")
    sections.add_argument("--no-torch", dest="torch", action="store_false",
                          help="skip the PyTorch masking baseline (default: run it when torch is installed)")
    sections.add_argument("--skip-memory", dest="memory", action="store_false",
                          help="skip the memory and cold-start measurements in fresh processes (default: run them)")
    sections.add_argument("--memory-runs", type=int, default=default.memory_runs, metavar="N",
                          help=f"fresh processes per deployment for memory and cold start, after one warm-up each "
                               f"(default {default.memory_runs})")
    sections.add_argument("--skip-e2e", dest="end_to_end", action="store_false",
                          help="skip the end-to-end section (default: run it)")
    sections.add_argument("--e2e-samples", type=int, default=default.e2e_samples, metavar="N",
                          help="use N samples of the labelled data (a seeded shuffle; default all)")
    sections.add_argument("--e2e-rounds", type=int, default=default.e2e_rounds, metavar="N",
                          help=f"passes over the labelled data per contender (default {default.e2e_rounds})")
    runtime = add_runtime_group(p, providers=False, verify=False,
                                backend_help="ort: the full bench of ONNX Runtime on the CPU; another backend "
                                             "(openvino): that backend against ONNX Runtime on the same bundle, each "
                                             "gate route and the dynamic network at every batch size (default ort)",
                                threads_help="intra-op threads for every ONNX Runtime session and for torch "
                                             "(default: their own)")
    runtime.add_argument("--shared-pool", action="store_true",
                         help="run every ONNX Runtime session (dispatcher and baselines) on one process-wide thread "
                              "pool (default: one pool per session)")
    output = output_group(p)
    output.add_argument("--png", type=output_file, metavar="PATH",
                        help="draw latency vs MAdds (needs matplotlib; default: none)")
    add_output_group(output, "every raw number and the medians")


def run(args: argparse.Namespace) -> int:
    from ..bench import BenchSettings, format_report, run_bench, write_png

    out = Output(args)
    if args.backend != "ort":
        return _compare_backends(args, out)
    settings = BenchSettings(rounds=args.rounds, warmup=args.warmup, block_seconds=args.block_ms / 1e3,
                             batch_sizes=args.batch_sizes, threads=args.threads, shared_pool=args.shared_pool,
                             torch=args.torch, memory=args.memory, memory_runs=args.memory_runs,
                             idle_wait=args.idle_wait_ms / 1e3, data=list(args.data), end_to_end=args.end_to_end,
                             labelled=args.labelled, e2e_samples=args.e2e_samples, e2e_rounds=args.e2e_rounds,
                             seed=args.seed, progress=out.progress)
    report = run_bench(args.bundle, settings)
    out.report(format_report(report))
    out.json(report)
    if args.png:
        out.note(f"wrote {write_png(report, args.png)}")
    return 0


def _compare_backends(args: argparse.Namespace, out: Output) -> int:
    """``--backend X``: X against ONNX Runtime on the same bundle, per route and dynamic, each batch size."""
    from ..bench import BenchSettings
    from ..bench.backends import compare_backends, format_backend_report
    from .options import backend_options

    if args.png or args.shared_pool:
        raise DsnetError(f"--png and --shared-pool belong to the ONNX Runtime bench; leave them out with "
                         f"--backend {args.backend}")
    settings = BenchSettings(rounds=args.rounds, warmup=args.warmup, block_seconds=args.block_ms / 1e3,
                             batch_sizes=args.batch_sizes, threads=args.threads, idle_wait=args.idle_wait_ms / 1e3,
                             seed=args.seed, progress=out.progress)
    report = compare_backends(args.bundle, args.backend, backend_options(args, args.backend), settings)
    out.report(format_backend_report(report))
    out.json(report)
    return 0
