"""The Triton model repository (``triton-repo``): config validity for every engine kind, and a real Triton server
(the one the ``nvidia-pytriton`` wheel ships, Python backend only) serving a ``--engines python`` repository of the
tiny bundle, which must give the dispatcher's logits and routes exactly."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from dsnet_export.errors import DsnetError
from dsnet_export.serving.triton import write_repository
from dsnet_export.serving.triton.repository import MARKER
from dsnet_export.serving.triton.server import INSTALL, LocalTriton, pytriton_dist

ROUTES = ["route_0", "route_1", "route_2", "route_3", "route_4", "route_5"]


# -- config validity -------------------------------------------------------------------------------------------------
def parse_config(path: Path):
    """``config.pbtxt`` parsed against Triton's own ``ModelConfig`` proto (from tritonclient)."""
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def with_fake_plans(bundle_dir: Path, out: Path, *, stripped: bool) -> Path:
    """A copy of a bundle whose manifest records (fake) full TensorRT plans for every engine."""
    shutil.copytree(bundle_dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    engines = [manifest["gate"]["file"], *(r["file"] for r in manifest["routes"])]
    plans = {}
    for engine in engines:
        plan = f"trt/fake/{Path(engine).stem}.plan"
        (out / plan).parent.mkdir(parents=True, exist_ok=True)
        data = f"plan of {engine}".encode()
        (out / plan).write_bytes(data)
        manifest["files"][plan] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        plans[engine] = plan
    manifest["trt"] = [{"tag": "fake", "tensorrt_version": "10.3.0", "gpu": "none", "compute_capability": [8, 6],
                        "precision": "fp32", "opt_batch": 8, "max_batch": 8, "stripped": stripped, "plans": plans,
                        "variants": {e: "0" * 64 for e in engines}}]
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.mark.parametrize("engines", ["python", "onnxruntime", "tensorrt"])
def test_configs_parse_as_triton_model_configs(tiny_bundle, tmp_path, engines):
    bundle = Path(tiny_bundle.path)
    if engines == "tensorrt":
        bundle = with_fake_plans(bundle, tmp_path / "with-plans", stripped=False)
    repo = write_repository(bundle, tmp_path / "repo", engines=engines, max_batch=8, max_queue_delay_us=700,
                            instances=2)
    m = json.loads((bundle / "manifest.json").read_text())
    assert repo.models == ["gate", *ROUTES, "dsnet"]
    assert json.loads((repo.path / MARKER).read_text())["bundle"] == str(bundle.resolve())
    for model in repo.models:
        config = parse_config(repo.path / model / "config.pbtxt")
        assert config.name == model
        assert config.max_batch_size == 8
        assert config.dynamic_batching.max_queue_delay_microseconds == 700
        assert [g.count for g in config.instance_group] == [2]
        assert config.parameters["bundle"].string_value == str(bundle.resolve())
        folder = repo.path / model / "1"
        if model == "dsnet" or engines == "python":
            assert config.backend == "python" and (folder / "model.py").is_file()
            assert "TritonPythonModel" in (folder / "model.py").read_text()
        elif engines == "onnxruntime":
            assert config.platform == "onnxruntime_onnx"
            assert sorted(os.listdir(folder)) == ["model.onnx", m["weights"]]
            weights = folder / m["weights"]
            assert not weights.is_symlink() and os.path.samefile(weights, bundle / m["weights"])  # one file, linked
        else:
            assert config.platform == "tensorrt_plan" and os.listdir(folder) == ["model.plan"]
    dsnet = parse_config(repo.path / "dsnet" / "config.pbtxt")
    assert [(t.name, list(t.dims)) for t in dsnet.input] == [("image", [3, 32, 32])]
    assert [(t.name, list(t.dims)) for t in dsnet.output] == [("logits", [10]), ("routes", [1])]
    gate = parse_config(repo.path / "gate" / "config.pbtxt")
    assert [t.name for t in gate.output] == [m["gate"]["features"], m["gate"]["logits"]]
    largest = next(r for r in m["routes"] if r["name"] == "largest")  # a fixed route takes the image
    fixed = parse_config(repo.path / f"route_{largest['index']}" / "config.pbtxt")
    assert list(fixed.input[0].dims) == [3, 32, 32]
    assert list(parse_config(repo.path / "route_0" / "config.pbtxt").input[0].dims) == m["gate"]["features_shape"]


def test_onnxruntime_accepts_the_linked_engines(tiny_bundle, tmp_path, mixed_batch):
    """Every model.onnx runs in ONNX Runtime from its version folder (external data through the hard link)."""
    import onnxruntime as ort

    from dsnet_export.runtime import Dispatcher

    repo = write_repository(tiny_bundle.path, tmp_path / "repo", engines="onnxruntime")
    x = mixed_batch[0][:4]
    with Dispatcher.load(tiny_bundle.path) as d:
        expected = d.run(x, route=0).logits
    gate = ort.InferenceSession(str(repo.path / "gate" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    features = gate.run(["features"], {"image": x})[0]
    route = ort.InferenceSession(str(repo.path / "route_0" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(route.run(None, {"features": features})[0], expected, rtol=1e-5, atol=1e-5)


def test_other_file_system_copies_the_weights_once(tiny_bundle, tmp_path, monkeypatch):
    """Hard links cannot cross file systems: the weights are then copied once and hard-linked from that copy."""
    import errno

    from dsnet_export.serving.triton import repository

    root, link = str(Path(tiny_bundle.path).resolve()), os.link

    def no_cross_device(src, dst):
        if str(src).startswith(root):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        link(src, dst)

    monkeypatch.setattr(repository.os, "link", no_cross_device)
    repo = write_repository(tiny_bundle.path, tmp_path / "repo", engines="onnxruntime")
    assert repo.weights == "copied-once" and repo.notes
    weights = [repo.path / model / "1" / "weights.safetensors" for model in repo.models[:-1]]
    assert len({w.stat().st_ino for w in weights}) == 1 and weights[0].stat().st_nlink == len(weights)
    assert not os.path.samefile(weights[0], Path(root) / "weights.safetensors")


def test_tensorrt_needs_full_plans(tiny_bundle, tmp_path):
    with pytest.raises(DsnetError, match="build-trt"):
        write_repository(tiny_bundle.path, tmp_path / "a", engines="tensorrt")
    stripped = with_fake_plans(Path(tiny_bundle.path), tmp_path / "stripped", stripped=True)
    with pytest.raises(DsnetError, match="weight-stripped.*--full-plans"):
        write_repository(stripped, tmp_path / "b", engines="tensorrt")
    full = with_fake_plans(Path(tiny_bundle.path), tmp_path / "full", stripped=False)
    with pytest.raises(DsnetError, match="max_batch=16"):
        write_repository(full, tmp_path / "c", engines="tensorrt", max_batch=16)


def test_replaces_only_its_own_repositories(tiny_bundle, tmp_path):
    out = tmp_path / "repo"
    write_repository(tiny_bundle.path, out, engines="python", max_batch=4)
    write_repository(tiny_bundle.path, out, engines="python", max_batch=2)  # ours: replaced whole
    assert parse_config(out / "dsnet" / "config.pbtxt").max_batch_size == 2
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no work folder left
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(DsnetError, match="refusing to replace"):
        write_repository(tiny_bundle.path, other, engines="python")
    assert (other / "keep.txt").read_text() == "mine"
    with pytest.raises(DsnetError, match="engines="):
        write_repository(tiny_bundle.path, tmp_path / "x", engines="tflite")
    assert not (tmp_path / "x").exists()


def test_triton_repo_command(tiny_bundle, tmp_path, capsys):
    from dsnet_export.cli import main

    out = tmp_path / "repo"
    assert main(["triton-repo", str(tiny_bundle.path), "--out", str(out), "--engines", "python", "--max-batch", "4",
                 "--max-queue-delay-us", "100", "--instances", "1", "--json", "-"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["models"] == ["gate", *ROUTES, "dsnet"] and summary["engines"] == "python"
    assert parse_config(out / "gate" / "config.pbtxt").max_batch_size == 4
    assert main(["triton-repo", str(tiny_bundle.path), "--out", str(out), "--engines", "tensorrt"]) == 1
    assert "build-trt" in capsys.readouterr().err


# -- a real server ---------------------------------------------------------------------------------------------------
class Server:
    def __init__(self, local: LocalTriton):
        self.local, self.url, self.startup = local, local.url, local.startup_s

    def client(self):
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(self.url, connection_timeout=30, network_timeout=30)

    def tail(self) -> str:
        return self.local.tail()


@pytest.fixture(scope="module")
def budget_file(tiny_bundle, mixed_batch, tmp_path_factory) -> Path:
    """A budget file with the mixed_batch bias (under which the gate picks all four routes), beside the bundle."""
    from dsnet_export.runtime.budget import BUDGET_VERSION, Budget, manifest_digest, save_budget

    bias = [float(b) for b in mixed_batch[1]]
    budget = Budget(BUDGET_VERSION, manifest_digest(Path(tiny_bundle.path)), 1, 1.0, 1.0, bias, [8, 8, 8, 8], 32,
                    "tests: the mixed_batch bias")
    return Path(save_budget(budget, tmp_path_factory.mktemp("budget") / "budget.json"))


@pytest.fixture(scope="module")
def triton(tiny_bundle, budget_file, tmp_path_factory):
    """tritonserver on 127.0.0.1 serving a --engines python repository of the tiny bundle (explicit model control,
    every model loaded at start); killed when the module's tests end."""
    pytest.importorskip("tritonclient.http")
    if pytriton_dist() is None:
        pytest.skip(f"no tritonserver binary (install it with: {INSTALL})")
    work = tmp_path_factory.mktemp("triton")
    repo = write_repository(tiny_bundle.path, work / "repo", engines="python", max_batch=8, max_queue_delay_us=2000,
                            instances=1, budget=budget_file)
    with LocalTriton(repo.path, explicit=True, ready_timeout=60) as local:
        client = Server(local).client()
        deadline = time.monotonic() + 60
        while not client.is_model_ready("dsnet"):
            if time.monotonic() > deadline:
                pytest.fail(f"the dsnet model is not ready after 60 s:\n{local.tail()}")
            time.sleep(0.1)
        yield Server(local)


def infer(client, x: np.ndarray, datatype: str = "FP32"):
    import tritonclient.http as httpclient

    tensor = httpclient.InferInput("image", list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    result = client.infer("dsnet", [tensor], timeout=30)
    return result.as_numpy("logits"), result.as_numpy("routes")


@pytest.fixture(scope="module")
def expected(tiny_bundle, budget_file, mixed_batch):
    from dsnet_export.runtime import Dispatcher

    x = mixed_batch[0]
    with Dispatcher.load(tiny_bundle.path, budget=budget_file) as d:
        result = d(x)
        return x, result.logits, result.routes


def test_server_equals_the_dispatcher(triton, expected):
    x, logits, routes = expected
    print(f"tritonserver ready in {triton.startup:.1f} s")
    assert len(set(routes.tolist())) == 4
    client = triton.client()
    # One request of 8 rows spread over several routes.
    got_logits, got_routes = infer(client, x[:8])
    assert len(set(routes[:8].tolist())) > 1
    np.testing.assert_array_equal(got_logits, logits[:8])
    assert got_routes.shape == (8, 1) and got_routes.dtype == np.int64  # [N] in the model, [N, 1] on the wire
    np.testing.assert_array_equal(got_routes.reshape(-1), routes[:8])
    # Concurrent requests of several sizes, batched together by Triton.
    slices = []
    start = 0
    for size in [1, 3, 2, 5, 1, 4, 7, 1, 8]:
        slices.append(slice(start % 32, min(start % 32 + size, 32)))
        start += size
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(infer, triton.client(), x[s]) for s in slices]
        for s, future in zip(slices, futures):
            got_logits, got_routes = future.result(timeout=60)
            np.testing.assert_array_equal(got_logits, logits[s])
            np.testing.assert_array_equal(got_routes.reshape(-1), routes[s])
    stats = client.get_inference_statistics()["model_stats"]
    print("requests / executions / rows per model:",
          {m["name"]: (m["inference_stats"]["success"]["count"], m["execution_count"], m["inference_count"])
           for m in stats})


def test_bad_requests_get_errors_and_the_server_keeps_serving(triton, expected):
    from tritonclient.utils import InferenceServerException

    x, logits, _ = expected
    client = triton.client()
    bad = x[:2].copy()
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(InferenceServerException, match="NaN"):
        infer(client, bad)
    with pytest.raises(InferenceServerException):
        infer(client, x[:2, :, :16])  # wrong shape
    with pytest.raises(InferenceServerException):
        infer(client, x[:2].astype(np.float64), "FP64")  # wrong dtype
    with pytest.raises(InferenceServerException):
        infer(client, np.zeros((9, 3, 32, 32), np.float32))  # more than max_batch_size
    # A bad request batched with good ones fails alone.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        good = [pool.submit(infer, triton.client(), x[i:i + 2]) for i in range(0, 6, 2)]
        wrong = pool.submit(infer, triton.client(), bad)
        for i, future in zip(range(0, 6, 2), good):
            np.testing.assert_array_equal(future.result(timeout=60)[0], logits[i:i + 2])
        with pytest.raises(InferenceServerException, match="NaN"):
            wrong.result(timeout=60)
    assert triton.local.process.poll() is None
    np.testing.assert_array_equal(infer(client, x[:3])[0], logits[:3])


def test_unloaded_route_fails_only_its_requests_and_reload_recovers(triton, expected):
    from tritonclient.utils import InferenceServerException

    x, logits, routes = expected
    client = triton.client()
    victim = int(routes[0])
    on_victim = np.flatnonzero(routes == victim)[:2]
    elsewhere = np.flatnonzero(routes != victim)[:3]
    client.unload_model(f"route_{victim}")
    deadline = time.monotonic() + 30
    while client.is_model_ready(f"route_{victim}") and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        with pytest.raises(InferenceServerException, match=f"route_{victim}"):
            infer(client, x[on_victim])
        np.testing.assert_array_equal(infer(client, x[elsewhere])[0], logits[elsewhere])
    finally:
        client.load_model(f"route_{victim}")
    assert client.is_model_ready(f"route_{victim}")
    np.testing.assert_array_equal(infer(client, x[on_victim])[0], logits[on_victim])
    both = np.concatenate([on_victim, elsewhere])
    got_logits, got_routes = infer(client, x[both])
    np.testing.assert_array_equal(got_logits, logits[both])
    np.testing.assert_array_equal(got_routes.reshape(-1), routes[both])



def test_loadtest_against_the_server_checks_every_answer(triton, tiny_bundle, budget_file, capsys):
    from dsnet_export.cli import main

    argv = ["loadtest", f"triton://{triton.url}/dsnet", "--bundle", str(tiny_bundle.path), "--budget",
            str(budget_file), "--requests", "48", "--concurrency", "8", "--request-size", "2", "--check",
            "--compare", "--json", "-", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["load"]["completed"] == 48 and report["load"]["errors"] == 0
    assert report["check"]["mismatches"] == 0
    assert report["load"]["routes"], report  # Triton's own statistics of the route models
    assert report["compare"]["dispatcher_batch8_rps"] > 0
