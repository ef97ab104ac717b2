"""Serve a bundle with Ray Serve: an ingress, the gate and one deployment per route the gate can choose, each
route batched across requests (the rows of concurrent requests that the gate sent to the same route run as one
batch) and scaled on its own.  Runs on a local Ray instance started here, or on an existing Ray cluster with
--address (dsnet-export must be installed on its nodes and the bundle readable at the same path).  Blocks until
Ctrl-C, then shuts the application down.

HTTP: POST / with a JSON body [N][C][H][W] (or {"inputs": ...}) or a .npy body (float32 [N,C,H,W]) returns
{"logits", "routes", "route_names"}; a malformed request gets 400 with a message.  GET /stats: the batches
formed per route (count, rows, mean rows).  Python: serve.get_app_handle("dsnet").infer.remote(x).

Needs the serve extra: pip install 'dsnet-export[serve]'.

examples:
  python -m dsnet_export serve engines/dsnet-digits
  python -m dsnet_export serve engines/dsnet-digits --replicas route_3=2,gate=1 --max-wait-ms 5 --port 8080
  python -m dsnet_export serve engines/dsnet-digits --budget --address ray://head:10001 --host 0.0.0.0
  curl -s -X POST --data-binary @batch.npy -H 'content-type: application/x-npy' http://127.0.0.1:8000/
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from ..errors import DsnetError
from .options import Output, add_bundle_argument, add_output_group

NAME = "serve"
HELP = "serve a bundle with Ray Serve, each route batched across requests and scaled on its own"
PARAMETER_FLAGS = {"max_wait_ms": "--max-wait-ms", "max_samples": "--max-samples"}


def replica_counts(text: str) -> dict[str, int]:
    """``--replicas``: 'NAME=COUNT,...' (syntax and counts; the names are checked against the bundle later)."""
    counts: dict[str, int] = {}
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, count = entry.rpartition("=")
        name = name.strip()
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"expected NAME=COUNT, got {entry!r}")
        try:
            value = int(count.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{entry!r}: the count must be a whole number") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{entry!r}: the count must be at least 1")
        if name in counts:
            raise argparse.ArgumentTypeError(f"{entry!r}: {name} is given twice")
        counts[name] = value
    if not counts:
        raise argparse.ArgumentTypeError("expected NAME=COUNT,... e.g. route_0=2,gate=1")
    return counts


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .argtypes import non_negative_float, port_number, positive_int, thread_count

    inputs = p.add_argument_group("inputs")
    add_bundle_argument(inputs, "the bundle to serve (made by build)")
    inputs.add_argument("--budget", nargs="?", const=True, default=None, metavar="FILE",
                        help="apply the gate bias from calibrate; FILE defaults to DIR/budget.json (default: no bias)")
    inputs.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the sha256 check of every bundle file on start (default: check)")
    scale = p.add_argument_group("scaling")
    scale.add_argument("--replicas", type=replica_counts, default=None, metavar="NAME=N,...",
                       help="replicas per deployment: ingress, gate, routes (every route), route_<k> or a route's "
                            "name, e.g. route_0=2,gate=1 (default: 1 each)")
    scale.add_argument("--num-cpus-per-route", type=non_negative_float, default=None, metavar="F",
                       help="logical CPUs each route replica reserves (default 0.25)")
    scale.add_argument("--num-gpus-per-route", type=non_negative_float, default=None, metavar="F",
                       help="GPUs each route replica reserves (default 0; use with --providers cuda)")
    scale.add_argument("--gate-in-ingress", action="store_true",
                       help="run the gate inside the ingress replicas instead of a gate deployment: one Ray hop "
                            "and one image transfer less per request (default: a gate deployment)")
    scale.add_argument("--threads", type=thread_count, default=1, metavar="N",
                       help="intra-op threads of each replica's ONNX Runtime sessions (default 1)")
    scale.add_argument("--providers", default=None, metavar="LIST",
                       help="ONNX Runtime execution providers of the gate and route replicas (default cpu)")
    batching = p.add_argument_group("batching", "the ingress batches the gate and each route across requests")
    batching.add_argument("--max-samples", type=positive_int, default=32, metavar="N",
                          help="rows at which a route's queue runs at once (default 32)")
    batching.add_argument("--max-wait-ms", type=non_negative_float, default=2.0, metavar="F",
                          help="longest a request waits for others to join its batch, in ms (default 2)")
    where = p.add_argument_group("where")
    where.add_argument("--host", default="127.0.0.1", help="HTTP host to listen on (default 127.0.0.1)")
    where.add_argument("--port", type=port_number, default=8000, help="HTTP port (default 8000)")
    where.add_argument("--address", default=None, metavar="RAY_ADDRESS",
                       help="an existing Ray cluster, e.g. auto or ray://head:10001 (default: start a local "
                            "Ray instance)")
    where.add_argument("--num-cpus", type=positive_int, default=None, metavar="N",
                       help="CPUs of the local Ray instance (default: every core; not with --address)")
    where.add_argument("--name", default=None, metavar="APP",
                       help="Serve application name (default dsnet)")
    output = add_output_group(p, "the deployments and the URL, once serving (with --dry-run: the deployments)")
    output.add_argument("--dry-run", action="store_true",
                        help="print the deployments (replicas, resources, engines) and exit without starting Ray "
                             "(default: serve)")
    p.set_defaults(parser_error=p.error)


def run(args: argparse.Namespace) -> int:
    from ..runtime import load_bundle
    from ..serving.ray import APP_NAME, build_app, deployment_key
    from ..serving.ray.app import deployment_plan

    out = Output(args)
    bundle = load_bundle(args.bundle, verify=args.verify)
    for name in args.replicas or {}:  # argparse errors naming the entry, as for the syntax
        try:
            deployment_key(name, bundle.manifest)
        except DsnetError as exc:
            args.parser_error(f"argument --replicas: {name}={args.replicas[name]}: {exc}")
    if args.address is not None and args.num_cpus is not None:
        args.parser_error("argument --num-cpus: the local instance only; leave it out with --address")
    resources = {}
    if args.num_cpus_per_route is not None:
        resources.setdefault("routes", {})["num_cpus"] = args.num_cpus_per_route
    if args.num_gpus_per_route is not None:
        resources.setdefault("routes", {})["num_gpus"] = args.num_gpus_per_route
    name = args.name or APP_NAME
    summary = {"bundle": str(bundle.root), "application": name, "url": f"http://{args.host}:{args.port}/",
               "ray_address": args.address or "local", "max_samples": args.max_samples,
               "max_wait_ms": args.max_wait_ms, "threads": args.threads,
               "deployments": deployment_plan(bundle.manifest, args.replicas, resources, args.gate_in_ingress)}
    rows = [[n, str(d["replicas"]), ", ".join(f"{k}={v}" for k, v in d["ray_actor_options"].items()), d["runs"]]
            for n, d in summary["deployments"].items()]
    from ..tables import format_table

    out.report(format_table(["deployment", "replicas", "reserves", "runs"], rows))
    if args.dry_run:
        out.json(summary)
        return 0
    app = build_app(bundle.root, replicas=args.replicas, resources=resources, max_samples=args.max_samples,
                    max_wait_ms=args.max_wait_ms, budget=args.budget, threads=args.threads,
                    providers=args.providers, verify=False,  # verified above
                    gate_in_ingress=args.gate_in_ingress)
    import ray
    from ray import serve

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    start = time.perf_counter()
    local = args.address is None
    if local:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=True)
    else:
        ray.init(address=args.address)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(app, name=name, route_prefix="/")
        summary["startup_s"] = round(time.perf_counter() - start, 3)
        out.report(f"serving {bundle.manifest.name} as Ray Serve application {name!r} at {summary['url']} "
                   f"(GET /stats for the batches formed) after {summary['startup_s']:.1f} s; Ctrl-C stops it")
        out.json(summary)
        sys.stdout.flush()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("shutting down", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        try:
            if local:
                serve.shutdown()
            else:
                serve.delete(name)  # the cluster's Serve instance and other applications stay
        finally:
            ray.shutdown()
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
