"""Benchmark a bundle on this machine with ONNX Runtime (CPU), all contenders interleaved round by round:

  (a) overhead: gate + route k through the dispatcher vs one monolithic ONNX of subnet k (same weights);
  (b) a batch mixing the gate's routes: per-sample dispatch vs the official masking (full width, channels
      beyond each sample's route zeroed, per-sample BN), in PyTorch (needs torch) and exported to ONNX;
  (c) route efficiency: narrowest-to-widest latency ratio vs the MAdds ratio;
  (d) memory and cold start of the dispatcher vs one standalone ONNX per route, in fresh processes.

Prints medians; --json keeps every raw number, --png draws latency vs MAdds.

examples:
  python -m dsnet_export bench engines/dsmbnet
  python -m dsnet_export bench engines/dsmbnet --rounds 40 --json bench.json --png bench.png
  python -m dsnet_export bench engines/dsmbnet --batch-sizes 1,4,16 --threads 1 --no-torch --skip-memory
"""

from __future__ import annotations

import argparse

NAME = "bench"
HELP = "benchmark a bundle: dispatcher overhead, mixed batch vs masking, route efficiency, memory"


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

    default = BenchSettings()
    p.add_argument("bundle", metavar="DIR", help="bundle directory")
    p.add_argument("--rounds", type=int, default=default.rounds,
                   help=f"timed rounds; each runs every contender once (default {default.rounds})")
    p.add_argument("--warmup", type=int, default=default.warmup,
                   help=f"untimed rounds first (default {default.warmup})")
    p.add_argument("--batch-sizes", type=parse_batch_sizes, default=default.batch_sizes, metavar="LIST",
                   help="batch sizes (default 1,8); the mixed-batch comparison runs at every size above 1")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads for every ONNX Runtime session and for torch (default: their own)")
    p.add_argument("--shared-pool", action="store_true",
                   help="run every ONNX Runtime session (dispatcher and baselines) on one process-wide thread pool")
    p.add_argument("--no-torch", dest="torch", action="store_false", help="skip the PyTorch masking baseline")
    p.add_argument("--skip-memory", dest="memory", action="store_false",
                   help="skip the memory and cold-start measurements (fresh processes)")
    p.add_argument("--memory-runs", type=int, default=default.memory_runs,
                   help=f"fresh processes per deployment for memory and cold start, after one warm-up each "
                        f"(default {default.memory_runs})")
    p.add_argument("--data", nargs="+", default=[], metavar="PATH",
                   help="images, folders or .npy/.npz arrays to pick the mixed batch from (default: synthetic images)")
    p.add_argument("--idle-wait-ms", type=float, default=default.idle_wait * 1e3,
                   help="before each timed call, wait up to this long for the process's spinning threads to go "
                        f"idle (default {default.idle_wait * 1e3:.0f}; 0 turns it off)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random and synthetic inputs")
    p.add_argument("--json", metavar="PATH", help="write every raw number and the medians as JSON")
    p.add_argument("--png", metavar="PATH", help="draw latency vs MAdds (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..bench import BenchSettings, format_report, run_bench, write_json, write_png

    settings = BenchSettings(rounds=args.rounds, warmup=args.warmup, batch_sizes=args.batch_sizes,
                             threads=args.threads, shared_pool=args.shared_pool, torch=args.torch, memory=args.memory,
                             memory_runs=args.memory_runs, idle_wait=args.idle_wait_ms / 1e3, data=list(args.data),
                             seed=args.seed, progress=not args.quiet)
    report = run_bench(args.bundle, settings)
    print(format_report(report))
    if args.json:
        print(f"wrote {write_json(report, args.json)}")
    if args.png:
        print(f"wrote {write_png(report, args.png)}")
    return 0
