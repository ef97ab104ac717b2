"""Load a served bundle: N requests at concurrency C; throughput, p50/p95/p99 latency and the per-route batch
sizes the server actually formed.  TARGET is a Triton server (triton://HOST:PORT[/MODEL], the routing model of
a repository from `triton-repo`), a Ray Serve application over HTTP (http://HOST:PORT[/PREFIX], from `serve`),
or, with --ray APP, that application's Python handle on the Ray cluster (--address, default: the running one).

--compare measures, in the same run, the in-process dispatcher on the same requests: fed in batches of 8 back
to back (the throughput a server should approach), and one request at a time (the latency a server adds).
--check compares every answer with the dispatcher's logits and routes.

examples:
  python -m dsnet_export loadtest http://127.0.0.1:8000 --bundle engines/dsnet-digits --compare
  python -m dsnet_export loadtest triton://127.0.0.1:8000/dsnet --bundle engines/dsmbnet --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

from ..errors import DsnetError
from .argtypes import positive_float, positive_int
from .options import Output, add_output_group

NAME = "loadtest"
HELP = "send requests to a served bundle (Triton or Ray Serve) and report throughput, latency, batch sizes"
PARAMETER_FLAGS = {"requests": "--requests", "concurrency": "--concurrency"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    target = p.add_argument_group("inputs")
    target.add_argument("url", nargs="?", metavar="TARGET",
                        help="triton://HOST:PORT[/MODEL] or http://HOST:PORT[/PREFIX] (Ray Serve); required "
                             "without --ray")
    target.add_argument("--ray", metavar="APP",
                        help="a Ray Serve application's handle instead of a URL (default: use TARGET)")
    target.add_argument("--address", default="auto", help="Ray cluster address with --ray (default: %(default)s)")
    load = p.add_argument_group("load")
    load.add_argument("--bundle", required=True, metavar="DIR",
                      help="the served bundle (required): its input shape, and the dispatcher of --compare/--check")
    load.add_argument("--requests", type=positive_int, default=256, metavar="N", help="default: %(default)s")
    load.add_argument("--concurrency", type=positive_int, default=32, metavar="C", help="default: %(default)s")
    load.add_argument("--request-size", type=positive_int, default=1, metavar="N",
                      help="images per request (default: %(default)s)")
    load.add_argument("--time-limit", type=positive_float, default=300.0, metavar="S",
                      help="stop sending after S seconds (default: %(default)s)")
    load.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: %(default)s)")
    load.add_argument("--budget", nargs="?", const=True, default=None, metavar="FILE",
                      help="the dispatcher of --compare/--check applies the gate bias from calibrate, as the server "
                           "does; FILE defaults to DIR/budget.json (default: no bias)")
    load.add_argument("--compare", action="store_true", help="measure the in-process dispatcher side by side")
    load.add_argument("--check", action="store_true", help="check every answer against the dispatcher")
    add_output_group(p, "the report")


def run(args: argparse.Namespace) -> int:
    if (args.url is None) == (args.ray is None):
        raise DsnetError("give a TARGET URL or --ray APP (one of them)")
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    from ..runtime import Dispatcher, load_bundle
    from ..serving.loadtest import run_load

    out = Output(args)
    bundle = load_bundle(args.bundle, verify=False)
    shape = tuple(bundle.manifest.input.shape)
    rng = np.random.default_rng(args.seed)
    inputs = [rng.standard_normal((args.request_size, *shape)).astype(np.float32)
              for _ in range(min(args.requests, 64))]
    target = _target(args)
    try:
        try:
            await target.batch_stats()  # reachable, and serving this kind of application
        except Exception as exc:  # noqa: BLE001 - connection refused, HTTP errors, Triton's own errors alike
            raise DsnetError(f"cannot reach {args.url or 'the Ray application ' + repr(args.ray)} "
                             f"({type(exc).__name__}: {str(exc).strip()[:200]}); is the server running?") from None
        report = await run_load(target, inputs, requests=args.requests, concurrency=args.concurrency,
                                time_limit=args.time_limit)
        for line in report.lines():
            out.report(line)
        result = {"target": args.url or f"ray:{args.ray}", "load": report.to_dict()}
        if args.compare or args.check:
            with Dispatcher.load(bundle.root, budget=args.budget) as dispatcher:
                if args.check:
                    result["check"] = await _check(target, dispatcher, inputs)
                    out.report(f"check: {result['check']['mismatches']} of {result['check']['requests']} answers "
                               f"differ from the in-process dispatcher")
                if args.compare:
                    result["compare"] = await _compare(target, dispatcher, inputs, report, args)
                    for line in result["compare"]["lines"]:
                        out.report(line)
    finally:
        await target.close()
    out.json(result)
    return 1 if report.errors or result.get("check", {}).get("mismatches") else 0


def _target(args: argparse.Namespace):
    from ..serving import clients

    if args.ray is not None:
        try:
            import ray
        except ImportError:
            raise DsnetError("--ray needs Ray Serve: pip install 'dsnet-export[serve]'") from None
        try:
            ray.init(address=args.address, ignore_reinit_error=True, log_to_driver=False)
            return clients.RayHandleTarget(args.ray)
        except Exception as exc:  # noqa: BLE001 - no cluster at the address, no such application
            raise DsnetError(f"cannot reach the Ray application {args.ray!r} at --address {args.address} "
                             f"({type(exc).__name__}: {str(exc).strip()[:200]})") from None
    url = args.url
    if url.startswith("triton://"):
        host, _, model = url[len("triton://"):].partition("/")
        return clients.TritonTarget(host, model or "dsnet", concurrency=args.concurrency)
    if url.startswith(("http://", "https://")):
        return clients.RayHttpTarget(url, concurrency=args.concurrency)
    raise DsnetError(f"TARGET {url!r}: expected triton://HOST:PORT[/MODEL] or http://HOST:PORT[/PREFIX]")


async def _check(target, dispatcher, inputs) -> dict:
    mismatches = 0
    for x in inputs:
        logits, routes = await target.infer(x)
        expected = dispatcher(x)
        if not (np.array_equal(routes, expected.routes) and np.array_equal(logits, expected.logits)):
            mismatches += 1
    return {"requests": len(inputs), "mismatches": mismatches}


async def _compare(target, dispatcher, inputs, report, args) -> dict:
    from ..serving.clients import batched_throughput
    from ..serving.loadtest import run_load

    baseline = batched_throughput(dispatcher, inputs, requests=report.completed or args.requests, batch=8)
    single_server = await run_load(target, inputs, requests=min(64, args.requests), concurrency=1)
    local = []
    for i in range(min(64, args.requests)):
        start = time.perf_counter()
        dispatcher(inputs[i % len(inputs)])
        local.append((time.perf_counter() - start) * 1000)
    local_p50 = float(np.median(local))
    added = single_server.percentile(50) - local_p50
    ratio = report.throughput / baseline if baseline else float("nan")
    lines = [f"in-process dispatcher, batches of 8: {baseline:.1f} requests/s; served at concurrency "
             f"{report.concurrency}: {report.throughput:.1f} requests/s = {ratio:.2f}x",
             f"mean route batch formed: {report.mean_route_batch:.2f} rows",
             f"one request at a time: served p50 {single_server.percentile(50):.2f} ms vs in-process "
             f"{local_p50:.2f} ms: +{added:.2f} ms"]
    return {"dispatcher_batch8_rps": round(baseline, 2), "throughput_ratio": round(ratio, 3),
            "single_request_p50_ms": round(single_server.percentile(50), 3),
            "dispatcher_p50_ms": round(local_p50, 3), "added_latency_ms": round(added, 3), "lines": lines}
