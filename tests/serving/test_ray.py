"""The Ray Serve application, started for real on a local Ray instance bound to 127.0.0.1: concurrent requests
(handle and HTTP) equal the in-process dispatcher exactly, rows of different requests share route batches,
malformed requests get 400, and a killed route replica fails only the requests it had and is replaced.  Also the
``serve`` command's argument checks (no Ray needed)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

from dsnet_export.cli import main
from dsnet_export.errors import InputError
from dsnet_export.runtime import Dispatcher, calibrate, save_budget
from dsnet_export.runtime.budget import manifest_digest

APP = "dsnet-test"
#: Every wait below is bounded by this many seconds.
DEADLINE_S = 25.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def budget_file(tiny_bundle, mixed_batch, tmp_path_factory):
    """A budget file holding the mixed batch's bias (the gate then picks all four routes)."""
    x, bias = mixed_batch
    with Dispatcher.load(tiny_bundle.path) as d:
        logits = d.gate_logits(x)
    macs = [r.macs for r in d.manifest.routes if r.gate_index is not None]
    budget = calibrate(logits, macs, max(macs), manifest_sha256=manifest_digest(tiny_bundle.path), data="test")
    budget = dataclasses.replace(budget, bias=[float(b) for b in bias])
    return save_budget(budget, tmp_path_factory.mktemp("budget") / "budget.json")


@pytest.fixture(scope="module")
def requests_x(mixed_batch):
    """128 requests of 1-3 rows (rows drawn from the mixed batch, slightly rescaled)."""
    x = mixed_batch[0]
    rng = np.random.default_rng(0)
    pool = np.concatenate([x * s for s in (1.0, 0.97, 1.03, 0.9)]).astype(np.float32)
    sizes = [1, 1, 2, 3] * 32
    return [np.ascontiguousarray(pool[rng.choice(len(pool), n, replace=False)]) for n in sizes]


@pytest.fixture(scope="module")
def reference(tiny_bundle, budget_file):
    with Dispatcher.load(tiny_bundle.path, budget=budget_file) as d:
        yield d


@pytest.fixture(scope="module")
def served(tiny_bundle, budget_file):
    ray = pytest.importorskip("ray")
    serve = pytest.importorskip("ray.serve")
    from dsnet_export.serving.ray import build_app

    saved = {k: os.environ.get(k) for k in ("RAY_USAGE_STATS_ENABLED",)}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    try:
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_app(tiny_bundle.path, budget=budget_file, max_wait_ms=5.0, health_check_period_s=1.0)
        handle = serve.run(app, name=APP, route_prefix="/")
        yield SimpleNamespace(ray=ray, serve=serve, handle=handle, url=f"http://127.0.0.1:{port}/",
                              startup_s=time.perf_counter() - started)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


async def _gather(handle, xs, timeout=DEADLINE_S):
    async def one(x):
        try:
            return await handle.infer.remote(x)
        except Exception as exc:  # noqa: BLE001 - returned to the test
            return exc
    return await asyncio.wait_for(asyncio.gather(*(one(x) for x in xs)), timeout)


def _post(url, body: bytes, content_type="application/json", timeout=DEADLINE_S):
    """(status, JSON) of a POST."""
    request = urllib.request.Request(url, data=body, headers={"content-type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _get(url, timeout=DEADLINE_S):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _npy(x) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, x, allow_pickle=False)
    return buffer.getvalue()


# -- the application on a local Ray instance -------------------------------------------------------------------
def test_concurrent_requests_equal_the_dispatcher_and_share_route_batches(served, requests_x, reference):
    before = served.handle.stats.remote().result(timeout_s=DEADLINE_S)
    results = asyncio.run(_gather(served.handle, requests_x))
    after = served.handle.stats.remote().result(timeout_s=DEADLINE_S)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[:3]
    routes = set()
    for x, got in zip(requests_x, results):
        expected = reference(x)
        np.testing.assert_array_equal(got["logits"], expected.logits)
        np.testing.assert_array_equal(got["routes"], expected.routes)
        routes.update(got["routes"].tolist())
    assert len(routes) >= 3  # the bias spreads the samples over the routes
    # a route batch held rows of more than one request: more submissions than batches on some route
    shared = {name: (s["submissions"] - before["routes"][name]["submissions"],
                     s["batches"] - before["routes"][name]["batches"]) for name, s in after["routes"].items()}
    assert any(subs > batches for subs, batches in shared.values()), shared
    assert after["requests"] - before["requests"] == len(requests_x)
    assert after["rows"] - before["rows"] == sum(map(len, requests_x))
    assert max(s["max_rows"] for s in after["routes"].values()) > 1


def test_http_json_and_npy_equal_the_dispatcher(served, requests_x, reference):
    bodies = [(json.dumps(x.tolist()).encode(), "application/json") for x in requests_x[:4]]
    bodies += [(_npy(x), "application/x-npy") for x in requests_x[4:8]]
    bodies.append((json.dumps({"inputs": requests_x[8].tolist()}).encode(), "application/json"))
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: _post(served.url, *b), bodies))
    for x, (status, data) in zip(requests_x, answers):
        assert status == 200, data
        expected = reference(x)
        np.testing.assert_array_equal(np.array(data["logits"], np.float32), expected.logits)
        assert data["routes"] == expected.routes.tolist()
        assert data["route_names"] == [reference.manifest.routes[k].name for k in data["routes"]]
    stats = _get(served.url + "stats")
    assert stats["gate"]["batches"] >= 1 and set(stats["routes"]) == {"uniform:0", "uniform:1", "uniform:2",
                                                                      "uniform:3"}
    assert _get(served.url)["input_shape"] == ["N", 3, 32, 32]


@pytest.mark.parametrize("body, content_type, message", [
    (b"{not json", "application/json", "neither JSON nor a .npy"),
    (b'{"images": []}', "application/json", "'inputs' key"),
    (b'"text"', "application/json", "nested list"),
    (b"[]", "application/json", "shape [0]"),
    (b"[[1, 2], [3]]", "application/json", "rectangular"),
    (json.dumps(np.zeros((1, 3, 16, 16)).tolist()).encode(), "application/json", "does not match"),
    (json.dumps([[[["a"] * 32] * 32] * 3]).encode(), "application/json", "rectangular"),
    (b"[[[[NaN]]]]", "application/json", "NaN is not a JSON number"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", "nested too deeply"),
    (b"[" + b"9" * 5000 + b"]", "application/json", "neither JSON"),
    (b"\x93NUMPY\x01\x00v\x00" + b"{'descr': '<f4', 'fortran_order': False, 'shape': (3000000000000,), }"
     .ljust(117) + b"\n", "application/x-npy", "truncated or corrupt"),  # claims 12 TB, holds none
    (_npy(np.zeros((2, 3, 32, 32), np.float64)), "application/x-npy", "dtype must be float32"),
    (_npy(np.full((1, 3, 32, 32), np.nan, np.float32)), "application/x-npy", "NaN"),
    (b"\x93NUMPY garbage", "application/x-npy", "format version"),
])
def test_malformed_http_requests_get_400(served, body, content_type, message):
    status, data = _post(served.url, body, content_type)
    assert status == 400 and message in data["error"], data


def test_malformed_handle_calls_raise_input_errors_and_the_service_stays_up(served, requests_x, reference):
    for bad in ([1, 2, 3], np.zeros((1, 3, 32, 32), np.float64), np.full((1, 3, 32, 32), np.inf, np.float32),
                np.zeros((0, 3, 32, 32), np.float32)):
        with pytest.raises(InputError):
            served.handle.infer.remote(bad).result(timeout_s=DEADLINE_S)
    nan_one = requests_x[0].copy()
    nan_one[0, 0, 0, 0] = np.nan
    results = asyncio.run(_gather(served.handle, [nan_one, *requests_x[:8]]))  # batched with good ones
    assert isinstance(results[0], InputError)
    for x, got in zip(requests_x[:8], results[1:]):
        np.testing.assert_array_equal(got["logits"], reference(x).logits)


def _replicas(ray, deployment: str) -> list[str]:
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["name"].startswith("SERVE_REPLICA::") and f"#{deployment}#" in a["name"])


def test_a_killed_route_replica_fails_its_requests_and_is_replaced(served, requests_x, reference):
    """A big request whose rows all take one route; that route's only replica is killed while it runs them: the
    request fails, and once Serve has replaced the replica the same requests succeed again."""
    ray, handle = served.ray, served.handle
    pool = np.concatenate(requests_x)
    routes = reference(pool).routes
    route = max(set(routes.tolist()), key=lambda k: reference.manifest.routes[k].macs)  # the slowest engine
    big = np.ascontiguousarray(np.resize(pool[routes == route], (8192, *pool.shape[1:])))
    deployment = f"route_{route}"
    killed = []

    async def kill_while_route_runs(delay):
        """The big request's outcome; its route's replica killed ``delay`` s after its gate batch completed
        (the features on their way to the route replica, then its engine running them)."""
        (name,) = _replicas(ray, deployment)
        replica = ray.get_actor(name, namespace="serve")
        gate_batches = (await handle.stats.remote())["gate"]["batches"]
        pending = asyncio.ensure_future(handle.infer.remote(big))
        deadline = time.monotonic() + DEADLINE_S
        while (await handle.stats.remote())["gate"]["batches"] == gate_batches and not pending.done():
            assert time.monotonic() < deadline, "the gate never ran"
            await asyncio.sleep(0.002)
        await asyncio.sleep(delay)
        ray.kill(replica, no_restart=True)
        killed.append(name)
        try:
            return await asyncio.wait_for(pending, DEADLINE_S)
        except Exception as exc:  # noqa: BLE001 - what the caller sees
            return exc

    def wait_for_recovery():
        deadline = time.monotonic() + DEADLINE_S
        while True:  # Serve replaces the replica; requests on that route succeed again
            result = asyncio.run(_gather(handle, [big[:8], *requests_x[:8]]))
            if not any(isinstance(r, Exception) for r in result):
                return result
            assert time.monotonic() < deadline, f"no recovery within {DEADLINE_S} s: {result[:2]}"
            time.sleep(0.25)

    failed_before = handle.stats.remote().result(timeout_s=DEADLINE_S)["failed"]
    # a kill that lands before the replica took the rows is retried by Serve, one after it finished fails
    # nothing: try a few moments
    for delay in (0.06, 0.03, 0.12, 0.0):
        outcome = asyncio.run(kill_while_route_runs(delay))
        wait_for_recovery()
        if isinstance(outcome, Exception):
            break
        np.testing.assert_array_equal(outcome["logits"], reference(big).logits)  # retried elsewhere: still exact
    assert isinstance(outcome, Exception), "the replica was killed four times and no request failed"
    assert "ActorDiedError" in type(outcome).__name__ or "died" in str(outcome), outcome
    result = wait_for_recovery()
    for x, got in zip([big[:8], *requests_x[:8]], result):
        np.testing.assert_array_equal(got["logits"], reference(x).logits)
    now = _replicas(ray, deployment)
    assert len(now) == 1 and not set(killed) & set(now)
    assert handle.stats.remote().result(timeout_s=DEADLINE_S)["failed"] > failed_before


# -- the serve command's arguments (no Ray) ----------------------------------------------------------------------
@pytest.mark.parametrize("replicas, message", [
    ("route_9=2", "route_9=2: unknown deployment 'route_9'"),
    ("gate=1,wide=2", "wide=2: unknown deployment 'wide'"),
    ("largest=1", "largest=1: route 'largest' (fixed route largest) is never chosen by the gate"),
    ("route_0=0", "'route_0=0': the count must be at least 1"),
    ("route_0=-1", "'route_0=-1': the count must be at least 1"),
    ("route_0=two", "'route_0=two': the count must be a whole number"),
    ("route_0", "expected NAME=COUNT, got 'route_0'"),
    ("gate=1,gate=2", "'gate=2': gate is given twice"),
])
def test_bad_replicas_are_argparse_errors_naming_the_entry(tiny_bundle, replicas, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", str(tiny_bundle.path), "--replicas", replicas, "--dry-run"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument --replicas: " in err and message in err, err


def test_dry_run_lists_the_deployments(tiny_bundle, capsys):
    assert main(["serve", str(tiny_bundle.path), "--replicas", "uniform:1=2,routes=3,gate=2",
                 "--num-cpus-per-route", "0.5", "--dry-run", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    plan = data["deployments"]
    assert list(plan) == ["ingress", "gate", "route_0", "route_1", "route_2", "route_3"]  # gate routes only
    assert [plan[n]["replicas"] for n in plan] == [1, 2, 3, 2, 3, 3]
    assert plan["route_2"]["ray_actor_options"] == {"num_cpus": 0.5}
    assert data["url"] == "http://127.0.0.1:8000/" and data["ray_address"] == "local"


@pytest.mark.parametrize("how", ["http", "handle"])
def test_loadtest_against_the_app_checks_every_answer(served, tiny_bundle, budget_file, capsys, how):
    from dsnet_export.cli import main

    target = [served.url] if how == "http" else ["--ray", APP]
    argv = ["loadtest", *target, "--bundle", str(tiny_bundle.path), "--budget", str(budget_file), "--requests",
            "48", "--concurrency", "8", "--check", "--json", "-", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["load"]["completed"] == 48 and report["load"]["errors"] == 0
    assert report["check"]["mismatches"] == 0
    assert sum(s["rows"] for s in report["load"]["routes"].values()) == 48


def test_the_gate_inside_the_ingress_gives_the_same_answers(served, tiny_bundle, budget_file, requests_x, reference):
    """``gate_in_ingress``: no gate deployment, the gate batched inside the ingress; the same logits and routes."""
    from dsnet_export.serving.ray import build_app

    small = {"num_cpus": 0.01}  # beside the module's application, within the 2 CPUs the test cluster has
    app = build_app(tiny_bundle.path, budget=budget_file, max_wait_ms=5.0, gate_in_ingress=True, verify=False,
                    resources={"ingress": small, "routes": small})
    handle = served.serve.run(app, name="dsnet-gate-inside", route_prefix="/inside")
    try:
        xs = requests_x[:32]
        got = asyncio.run(_gather(handle, xs))
        for x, result in zip(xs, got):
            expected = reference(x)
            np.testing.assert_array_equal(result["routes"], expected.routes)
            np.testing.assert_array_equal(result["logits"], expected.logits)
        stats = handle.stats.remote().result(timeout_s=DEADLINE_S)
        assert stats["gate"]["rows"] == sum(len(x) for x in xs)
    finally:
        served.serve.delete("dsnet-gate-inside")
