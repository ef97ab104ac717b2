"""Resident memory and cold start, each measured in a fresh Python process.

A child process imports numpy, onnxruntime and ``dsnet_export.runtime`` (the baseline every
deployment pays), reads its resident set size (RSS), then loads one deployment, reads RSS
again, runs a first batch of one image, and reads RSS a third time.  It reports RSS *minus
its own baseline* after load and after the first call, and the wall time of load and first
call (cold start = both).  Medians leave out one warm-up process of each kind.  Deployments:

* ``dispatcher``: ``Dispatcher.load(bundle, verify=False)`` (all route sessions created up
  front; the sha256 check, which the naive files do not have, is timed apart as
  ``hash_check_s``), first call ``dispatcher(x)``;
* ``naive``: one standalone ONNX per bundle route loaded as its own session (with the dispatcher's
  session options, ``session_options``); first call runs the first gate route's model (it outputs
  the gate logits too), then the chosen route's model when the gate picks another one.

Run as ``python -m dsnet_export.bench.memory '<json>'``; prints one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

KINDS = ("dispatcher", "naive")


def rss_bytes() -> dict[str, int]:
    """This process's resident memory: total, anonymous and file-backed (Linux), else peak RSS."""
    status = Path("/proc/self/status")
    if status.is_file():
        fields = {}
        for line in status.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0]) * 1024
        if "VmRSS" in fields:
            return {"rss": fields["VmRSS"], "anon": fields.get("RssAnon", 0), "file": fields.get("RssFile", 0)}
    import resource  # other Unixes: only the peak is available

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rss": peak * (1 if sys.platform == "darwin" else 1024), "anon": 0, "file": 0}


def _child(spec: dict) -> dict:
    start_rss = rss_bytes()
    t0 = time.perf_counter()
    import numpy as np
    import onnxruntime as ort

    from dsnet_export.runtime import Dispatcher, load_bundle
    from dsnet_export.runtime.backends import options_class

    if spec["kind"] == "naive":  # (the dispatcher imports its backend while it loads, timed and measured there)
        from dsnet_export.runtime.backends.ort.sessions import session_options

    import_s = time.perf_counter() - t0
    bundle = load_bundle(spec["bundle"], verify=False)
    x = np.random.default_rng(spec.get("seed", 0)).standard_normal((1, *bundle.manifest.input.shape))
    x = x.astype(np.float32)
    threads = spec.get("threads")
    base = rss_bytes()

    t0 = time.perf_counter()
    if spec["kind"] == "dispatcher":
        deployment = Dispatcher.load(spec["bundle"], "ort", options_class("ort")(threads=threads), verify=False)
        t1 = time.perf_counter()
        loaded = rss_bytes()
        route = int(deployment(x).routes[0])
    else:
        options = session_options(threads)  # the dispatcher's own session options
        sessions = [ort.InferenceSession(p, options, providers=["CPUExecutionProvider"]) for p in spec["files"]]
        t1 = time.perf_counter()
        loaded = rss_bytes()
        first_gate = bundle.manifest.gate.routes[0]
        _, gate_logits = sessions[first_gate].run(["logits", "gate_logits"], {"image": x})
        route = bundle.manifest.gate.routes[int(np.argmax(gate_logits[0]))]
        if route != first_gate:
            sessions[route].run(["logits"], {"image": x})
    t2 = time.perf_counter()
    first = rss_bytes()
    result = {
        "kind": spec["kind"], "route": route, "import_s": import_s, "load_s": t1 - t0, "first_call_s": t2 - t1,
        "cold_start_s": t2 - t0, "interpreter_rss": start_rss["rss"], "baseline_rss": base["rss"],
        "load_rss": loaded["rss"] - base["rss"], "first_call_rss": first["rss"] - base["rss"],
        "load_anon": loaded["anon"] - base["anon"], "first_call_anon": first["anon"] - base["anon"],
        "first_call_file": first["file"] - base["file"],
    }
    if spec["kind"] == "dispatcher":
        t0 = time.perf_counter()
        load_bundle(spec["bundle"], verify=True)
        result["hash_check_s"] = time.perf_counter() - t0
    return result


def measure_once(kind: str, bundle: Path, naive_files: Sequence[Path], threads: int | None = None,
                 seed: int = 0, timeout: float = 300.0) -> dict:
    """One fresh-process measurement of ``kind`` ('dispatcher' or 'naive')."""
    if kind not in KINDS:
        raise ValueError(f"unknown deployment {kind!r}")
    spec = {"kind": kind, "bundle": str(bundle), "files": [str(p) for p in naive_files], "threads": threads,
            "seed": seed}
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-m", "dsnet_export.bench.memory", json.dumps(spec)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement ({kind}) failed:\n{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(bundle: Path, naive_files: Sequence[Path], runs: int = 3, threads: int | None = None,
            on_run: Callable[[str], object] | None = None, warmup: int = 1) -> dict[str, list[dict]]:
    """``runs`` fresh processes per deployment, alternating the order run by run, after ``warmup``
    runs of each (marked ``"warmup": True``, to be left out of medians): the first processes after
    the timing rounds met a busier page cache and disk (the naive files were just written) and
    were up to 2x slower to load, whichever deployment they ran."""
    results: dict[str, list[dict]] = {k: [] for k in KINDS}
    for i in range(warmup + runs):
        for kind in (KINDS if i % 2 == 0 else KINDS[::-1]):
            run = measure_once(kind, bundle, naive_files, threads, seed=i)
            run["warmup"] = i < warmup
            results[kind].append(run)
            if on_run is not None:
                on_run(kind)
    return results


def measured(runs: Sequence[dict]) -> list[dict]:
    """The runs that count (not warm-up)."""
    return [run for run in runs if not run.get("warmup", False)]


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
