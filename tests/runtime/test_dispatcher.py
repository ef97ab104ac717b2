"""The ONNX Runtime dispatcher: routing, forced routes, policies, budget, input checks, threads."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from dsnet_export import DsnetError
from dsnet_export.runtime import Dispatcher, load_bundle
from dsnet_export.runtime.backends.ort import OrtBackend, OrtOptions

ATOL = 1e-5


@pytest.fixture(scope="module")
def dispatcher(tiny_bundle):
    with Dispatcher.load(tiny_bundle.path) as d:
        yield d


def _torch_dynamic(model, x, bias):
    with torch.no_grad():
        return model.forward_dynamic(torch.from_numpy(x), torch.from_numpy(bias))


def test_per_sample_routing_equals_the_supernet_sample_by_sample(dispatcher, tiny_model, mixed_batch):
    x, bias = mixed_batch
    dispatcher.gate_bias = bias
    try:
        result = dispatcher(x)
    finally:
        dispatcher.gate_bias = None
    expected = _torch_dynamic(tiny_model, x, bias)
    assert result.routes.tolist() == expected.gate_index.tolist()  # gate routes lead the manifest
    assert len(set(result.routes.tolist())) == 4
    np.testing.assert_allclose(result.logits, expected.logits.numpy(), atol=ATOL, rtol=0)
    # Input order is kept: each row equals its own sample run alone through its route.
    with torch.no_grad():
        for i in range(0, 32, 5):
            alone = tiny_model(torch.from_numpy(x[i:i + 1]), int(result.routes[i])).numpy()
            np.testing.assert_allclose(result.logits[i:i + 1], alone, atol=ATOL, rtol=0)
    macs = [dispatcher.routes[r].macs for r in result.routes]
    assert result.macs.tolist() == macs
    np.testing.assert_allclose(result.gate_logits, expected.gate_logits.numpy(), atol=ATOL)


def test_unbiased_routing_is_the_gate_argmax(dispatcher, tiny_model, mixed_batch):
    x, _ = mixed_batch
    result = dispatcher(x)
    with torch.no_grad():
        argmax = tiny_model.gate_logits(torch.from_numpy(x)).argmax(1).numpy()
    assert result.routes.tolist() == argmax.tolist()


@pytest.mark.parametrize("route", [0, 1, 2, 3, 4, 5, "uniform:2", "largest"])
def test_forced_routes(dispatcher, tiny_model, mixed_batch, route):
    x = mixed_batch[0][:6]
    result = dispatcher.run(x, route=route)
    info = next(r for r in dispatcher.routes if route in (r.index, r.name))
    assert set(result.routes.tolist()) == {info.index}
    reference = info.gate_index if info.kind == "gate" else info.name
    with torch.no_grad():
        expected = tiny_model(torch.from_numpy(x), reference).numpy()
    np.testing.assert_allclose(result.logits, expected, atol=ATOL, rtol=0)
    assert (result.gate_logits is None) == (info.kind == "fixed")


def test_whole_batch_policy_uses_the_widest_chosen_route(dispatcher, mixed_batch):
    x, bias = mixed_batch
    dispatcher.gate_bias = bias
    try:
        per_sample = dispatcher(x[:8])
        whole = dispatcher(x[:8], policy="whole-batch")
    finally:
        dispatcher.gate_bias = None
    widest = max(per_sample.routes.tolist(), key=lambda r: dispatcher.routes[r].macs)
    assert whole.routes.tolist() == [widest] * 8
    np.testing.assert_allclose(whole.logits, dispatcher.run(x[:8], route=widest).logits, atol=ATOL)
    with pytest.raises(ValueError):
        dispatcher(x[:2], policy="sometimes")


def test_device_transfer_path_gives_the_same_results(tiny_bundle, dispatcher, mixed_batch):
    """The GPU code path (features kept as OrtValues, gathered by a Gather session), run on the CPU."""
    x, bias = mixed_batch
    backend = OrtBackend(load_bundle(tiny_bundle.path), device_path=True)  # a test hook of the backend
    with Dispatcher.load(tiny_bundle.path, backend) as device_path:
        device_path.gate_bias = bias
        dispatcher.gate_bias = bias
        try:
            a, b = device_path(x), dispatcher(x)
        finally:
            dispatcher.gate_bias = None
    assert a.routes.tolist() == b.routes.tolist()
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-6)


def test_weights_are_shared_and_lazy_loading(tiny_bundle, mixed_batch):
    x = mixed_batch[0][:2]
    with Dispatcher.load(tiny_bundle.path, lazy=True) as d:
        assert d.shared_weights
        assert d.backend.loaded == {"gate.onnx"}
        d.run(x, route=2)
        assert d.backend.loaded == {"gate.onnx", "route_2.onnx"}
    with Dispatcher.load(tiny_bundle.path, "ort", OrtOptions(share_weights=False), verify=False) as plain:
        assert not plain.shared_weights
        np.testing.assert_allclose(plain.run(x, route=1).logits, Dispatcher.load(tiny_bundle.path).run(x, 1).logits)


def test_bias_steers_routing(dispatcher, mixed_batch):
    x = mixed_batch[0][:8]
    dispatcher.gate_bias = [0, 0, 0, 1e4]
    try:
        assert dispatcher(x).routes.tolist() == [3] * 8
    finally:
        dispatcher.gate_bias = None
    for bad in ([1, 2], [0, 0, np.nan, 0], "fast"):
        with pytest.raises(ValueError, match="gate_bias needs 4 finite numbers"):
            dispatcher.gate_bias = bad


@pytest.mark.parametrize("bad, message", [
    ([[1.0]], "numpy array"),
    (np.zeros((2, 3, 32, 32), np.float64), "dtype must be float32"),
    (np.zeros((3, 32, 32), np.float32), "NCHW"),
    (np.zeros((2, 3, 32, 31), np.float32), "does not match"),
    (np.zeros((2, 32, 32, 3), np.float32), "does not match"),
    (np.zeros((0, 3, 32, 32), np.float32), "empty"),
    (np.full((2, 3, 32, 32), np.nan, np.float32), "NaN or infinite"),
    (np.pad(np.zeros((1, 3, 32, 31), np.float32), ((0, 0), (0, 0), (0, 0), (0, 1)), constant_values=np.inf),
     "NaN or infinite"),
])
def test_bad_inputs_are_value_errors(dispatcher, bad, message):
    with pytest.raises(ValueError, match=message):
        dispatcher(bad)


def test_unknown_route_and_closed_dispatcher(tiny_bundle, mixed_batch):
    x = mixed_batch[0][:1]
    d = Dispatcher.load(tiny_bundle.path)
    with pytest.raises(ValueError, match="unknown route 'medium'"):
        d.run(x, route="medium")
    with pytest.raises(ValueError, match="unknown route 9"):
        d.run(x, route=9)
    d.close()
    with pytest.raises(DsnetError, match="closed"):
        d.run(x, route=0)


def test_non_contiguous_input_is_accepted(dispatcher, mixed_batch):
    x = mixed_batch[0][:4]
    flipped = x[:, :, :, ::-1]
    np.testing.assert_allclose(dispatcher(flipped).logits, dispatcher(np.ascontiguousarray(flipped)).logits)


def test_calls_from_several_threads(dispatcher, mixed_batch, run_threads):
    x, _ = mixed_batch
    batches = [x[i:i + 3 + i % 4] for i in range(0, 24, 3)]
    expected = [dispatcher(b).logits for b in batches]
    results = {}

    def worker(t):
        for repeat in range(5):
            for i, b in enumerate(batches):
                if (i + t + repeat) % 2 == 0:
                    results[t, repeat, i] = dispatcher(b).logits
                else:
                    results[t, repeat, i] = dispatcher.run(b, route=(i % 6)).logits

    assert not run_threads(worker, 4)
    for (t, repeat, i), logits in results.items():
        reference = expected[i] if (i + t + repeat) % 2 == 0 else dispatcher.run(batches[i], route=i % 6).logits
        np.testing.assert_allclose(logits, reference, atol=1e-6)


def test_missing_provider_names_the_package(tiny_bundle):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    with pytest.raises(DsnetError, match="onnxruntime-gpu"):
        Dispatcher.load(tiny_bundle.path, "ort", OrtOptions(providers=["cuda"]))
    with pytest.raises(DsnetError, match="not available"):
        Dispatcher.load(tiny_bundle.path, "ort", OrtOptions(providers="NoSuchExecutionProvider"))


def test_dispatcher_runs_without_torch(tiny_bundle):
    code = ("import sys, numpy as np\n"
            "from dsnet_export.runtime import Dispatcher\n"
            f"with Dispatcher.load({str(tiny_bundle.path)!r}) as d:\n"
            "    r = d(np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32))\n"
            "assert r.logits.shape == (3, 10)\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_oracle_dispatch_equals_official_dynamic_forward(oracle_bundle, oracle):
    """Official dynamic (masking) forward == each sample's uniform-g logits with g its gate argmax."""
    x = np.load(oracle / "oracle_inputs.npz")["X"]
    ref = np.load(oracle / "reference_logits.npz")
    with Dispatcher.load(oracle_bundle.path) as d:
        result = d(x)
    assert result.routes.tolist() == ref["gate_logits"].argmax(1).tolist()
    for g, key in [(0, "logits_uniform_k00"), (3, "logits_uniform_k03")]:
        rows = result.routes == g
        assert rows.any()
        np.testing.assert_allclose(result.logits[rows], ref[key][rows], atol=1e-4, rtol=0)


def test_shared_thread_pool_gives_the_same_results(tiny_bundle):
    """One process-wide pool changes ONNX Runtime for the whole process, so it runs in its own."""
    code = ("import numpy as np\n"
            "from dsnet_export.runtime import Dispatcher, load_bundle\n"
            "from dsnet_export.runtime.backends.ort import OrtBackend, OrtOptions\n"
            "x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)\n"
            f"with Dispatcher.load({str(tiny_bundle.path)!r}, 'ort', OrtOptions(shared_pool=True, threads=2)) as d:\n"
            "    a = d(x)\n"
            f"bundle = load_bundle({str(tiny_bundle.path)!r})\n"
            "device = OrtBackend(bundle, OrtOptions(shared_pool=True), device_path=True)\n"
            "with Dispatcher.load(bundle.root, device) as d:\n"
            "    b = d(x)\n"
            "assert (a.routes == b.routes).all() and np.abs(a.logits - b.logits).max() < 1e-6\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_default_dispatcher_after_a_shared_pool_one_joins_the_pool(tiny_bundle):
    """ONNX Runtime refuses per-session threads once its process-wide pool exists: the second dispatcher
    shares the pool (saying so) instead of failing with ONNX Runtime's own error."""
    code = ("import warnings\n"
            "import numpy as np\n"
            "from dsnet_export.runtime import Dispatcher\n"
            "from dsnet_export.runtime.backends.ort import OrtOptions\n"
            "x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)\n"
            f"with Dispatcher.load({str(tiny_bundle.path)!r}, 'ort', OrtOptions(shared_pool=True)) as d:\n"
            "    a = d(x)\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            f"    with Dispatcher.load({str(tiny_bundle.path)!r}, 'ort', OrtOptions(threads=1)) as d:\n"
            "        b = d(x)\n"
            "assert any('uses the shared pool too' in str(w.message) for w in caught)\n"
            "assert (a.routes == b.routes).all() and np.abs(a.logits - b.logits).max() < 1e-6\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_global_pool_made_elsewhere_is_a_typed_error(tiny_bundle):
    code = ("import onnxruntime as ort\n"
            "from dsnet_export import DsnetError\n"
            "from dsnet_export.runtime import Dispatcher\n"
            "ort.set_global_thread_pool_sizes(1, 1)\n"
            "try:\n"
            f"    Dispatcher.load({str(tiny_bundle.path)!r})\n"
            "except DsnetError as exc:\n"
            "    assert 'shared_pool=True' in str(exc), exc\n"
            "else:\n"
            "    raise SystemExit('loaded')\n")
    subprocess.run([sys.executable, "-c", code], check=True)
