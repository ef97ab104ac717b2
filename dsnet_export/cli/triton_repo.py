"""Write a Triton Inference Server model repository for a bundle: a `gate` model, one `route_<k>` model per
route (each with dynamic batching) and a `dsnet` routing model (Python backend) that runs the gate once per
batch of queued requests, groups the rows by the route the gate chose and calls each route model once per
group (BLS, concurrently).  Query `dsnet` with input `image` (FP32 [N, C, H, W]); it returns `logits`
(FP32 [N, classes]) and `routes` (INT64 [N, 1]), as the in-process dispatcher computes them.

--engines onnxruntime (default) and tensorrt need those Triton backends (NVIDIA's container); their model
folders hard-link the bundle's files, so the weights are stored once.  --engines python runs ONNX Runtime
inside Python-backend models on the bundle's own files, for servers with only the Python backend.  The
repository refers to the bundle by its absolute path: keep the bundle where it is.  The Python models import
dsnet_export, numpy and onnxruntime in the server's Python.

--serve starts, after writing, the Triton server that `pip install --no-deps nvidia-pytriton` provides (Python
backend only, so with --engines python; CPU) on --host:--port until Ctrl-C.

examples:
  python -m dsnet_export triton-repo engines/dsnet-digits --out triton-repo
  tritonserver --model-repository $PWD/triton-repo          # in NVIDIA's Triton container
  python -m dsnet_export triton-repo engines/dsnet-digits --out triton-repo --engines python --serve
"""

from __future__ import annotations

import argparse

from .options import Output, add_bundle_argument, add_output_group

NAME = "triton-repo"
HELP = "write a Triton model repository (gate, routes, a routing model) for a bundle"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..serving.triton.repository import ENGINES
    from .argtypes import non_negative_int, port_number, positive_int, thread_count

    inputs = p.add_argument_group("inputs")
    add_bundle_argument(inputs)
    inputs.add_argument("--budget", nargs="?", const=True, default=None, metavar="FILE",
                        help="route with the gate bias from calibrate; FILE defaults to DIR/budget.json "
                             "(default: no bias)")
    repo = p.add_argument_group("repository")
    repo.add_argument("--out", required=True, metavar="REPO",
                      help="the repository folder to write: new, empty, or one this command wrote (required)")
    repo.add_argument("--engines", choices=ENGINES, default="onnxruntime",
                      help="how the gate and route models run: onnxruntime (Triton's ONNX Runtime backend), "
                           "tensorrt (the bundle's full plans from build-trt --full-plans) or python (ONNX "
                           "Runtime inside the Python backend) (default onnxruntime)")
    repo.add_argument("--max-batch", type=positive_int, default=8, metavar="N",
                      help="max_batch_size of every model (default 8)")
    repo.add_argument("--max-queue-delay-us", type=non_negative_int, default=500, metavar="N",
                      help="longest a request waits for others to batch with, in microseconds (default 500)")
    repo.add_argument("--instances", type=positive_int, default=1, metavar="N",
                      help="instances of every model (default 1)")
    repo.add_argument("--name", default="dsnet", help="the routing model's name (default dsnet)")
    repo.add_argument("--threads", type=thread_count, default=1, metavar="N",
                      help="ONNX Runtime threads per engine model instance with --engines python; each instance is "
                           "a process of its own: scale with --instances (default 1)")
    server = p.add_argument_group("server")
    server.add_argument("--serve", action="store_true",
                        help="then serve it with nvidia-pytriton's tritonserver until Ctrl-C (--engines python)")
    server.add_argument("--host", default="127.0.0.1", help="HTTP address with --serve (default 127.0.0.1)")
    server.add_argument("--port", type=port_number, default=8000, metavar="N",
                        help="HTTP port with --serve (default 8000)")
    add_output_group(p, "what was written")


def run(args: argparse.Namespace) -> int:
    from ..errors import DsnetError
    from ..serving.triton import write_repository

    if args.serve and args.engines != "python":
        raise DsnetError("--serve runs the Triton server of nvidia-pytriton, which has only the Python backend: "
                         "use --engines python with it (or serve the repository in NVIDIA's container)")
    out = Output(args)
    repo = write_repository(args.bundle, args.out, engines=args.engines, max_batch=args.max_batch,
                            max_queue_delay_us=args.max_queue_delay_us, instances=args.instances,
                            budget=args.budget, name=args.name, threads=args.threads)
    out.report(f"wrote {repo.path}: models {', '.join(repo.models)} ({repo.engines} engines, routing model "
               f"{repo.router!r}) for the bundle at {repo.bundle}")
    for note in repo.notes:
        out.report(f"note: {note}")
    out.json(repo.to_dict())
    if not args.serve:
        out.report(f"serve it: tritonserver --model-repository {repo.path}")
        return 0
    import signal

    from ..serving.triton.server import LocalTriton

    def stop(signum, frame):
        raise KeyboardInterrupt  # SIGTERM (a supervisor, kill) stops the server as Ctrl-C does

    signal.signal(signal.SIGTERM, stop)
    with LocalTriton(repo.path, host=args.host, http_port=args.port) as server:
        out.report(f"serving {repo.router!r} at http://{server.url}/v2/models/{repo.router} (ready in "
                   f"{server.startup_s:.1f} s; Ctrl-C stops it; log {server.log})")
        code = server.wait()
    return 0 if code in (0, 130, -2, -15) else 1
