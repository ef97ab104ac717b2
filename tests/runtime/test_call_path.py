"""The dispatcher's lean call path: reused IO bindings, the input check inside the gate engine,
one-thread sessions for small calls, lazy result fields.  Every shortcut must give what the plain
path gives."""

import numpy as np
import onnx
import pytest

from dsnet_export.runtime import Dispatcher, load_bundle
from dsnet_export.runtime.backends.ort import OrtBackend, OrtOptions
from dsnet_export.runtime.backends.ort import backend as ort_backend
from dsnet_export.runtime.backends.ort.finite import FINITE_OUTPUT, add_finite_output
from dsnet_export.runtime.backends.ort.transfer import MAX_BINDINGS_PER_THREAD, fast_run


@pytest.fixture(scope="module")
def dispatcher(tiny_bundle):
    with Dispatcher.load(tiny_bundle.path) as d:
        yield d


@pytest.mark.parametrize("route", [None, 2, "uniform:4", "largest"])
def test_a_refilled_input_buffer_is_read_again(dispatcher, mixed_batch, route):
    """The image stays bound between calls; refilling the same array in place must change the result."""
    x = mixed_batch[0]
    buffer = x[:2].copy()  # never a view of the shared fixture
    first = dispatcher.run(buffer, route=route).logits
    buffer[...] = x[5:7]
    second = dispatcher.run(buffer, route=route).logits
    np.testing.assert_array_equal(second, dispatcher.run(np.ascontiguousarray(x[5:7]), route=route).logits)
    assert not np.allclose(first, second)


def test_results_do_not_alias_the_engines_buffers(dispatcher, mixed_batch):
    x = mixed_batch[0]
    a = dispatcher(x[:1])
    logits, gate = a.logits.copy(), a.gate_logits.copy()
    for i in range(1, 4):
        dispatcher(x[i:i + 1])
        dispatcher.run(x[i:i + 1], route=0)
    np.testing.assert_array_equal(a.logits, logits)
    np.testing.assert_array_equal(a.gate_logits, gate)


@pytest.mark.parametrize("route", [None, 1, "uniform:4", "largest"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_refused_on_every_path(dispatcher, mixed_batch, route, value):
    x = mixed_batch[0][:3].copy()
    x[1, 2, 5, 7] = value
    with pytest.raises(ValueError, match="NaN or infinite"):
        dispatcher.run(x, route=route)
    with pytest.raises(ValueError, match="NaN or infinite"):
        dispatcher.gate_logits(x)


def test_the_check_can_be_turned_off(tiny_bundle, mixed_batch):
    x = mixed_batch[0][:2].copy()
    x[0, 0, 0, 0] = np.nan
    with Dispatcher.load(tiny_bundle.path, check_finite=False) as d:
        result = d(x)
        assert np.isnan(result.logits[0]).all() and np.isfinite(result.logits[1]).all()
        assert np.isnan(d.run(x, route="largest").logits[0]).all()


def test_the_device_path_checks_inside_the_gate_engine_too(tiny_bundle, mixed_batch):
    x = mixed_batch[0][:3].copy()
    with Dispatcher.load(tiny_bundle.path, OrtBackend(load_bundle(tiny_bundle.path), device_path=True)) as d:
        d(x)
        x[2, 0, 0, 0] = np.inf
        with pytest.raises(ValueError, match="NaN or infinite"):
            d(x)


def test_the_finite_output_is_added_to_a_copy_of_the_graph_only(tiny_bundle):
    path = tiny_bundle.path / "gate.onnx"
    before = path.read_bytes()
    model = add_finite_output(onnx.load(str(path), load_external_data=False), "image")
    assert model.graph.output[-1].name == FINITE_OUTPUT
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="cannot add the finite check"):
        add_finite_output(model, "image")  # twice
    with pytest.raises(ValueError, match="cannot add the finite check"):
        add_finite_output(onnx.load(str(path), load_external_data=False), "no_such_input")


def test_small_calls_run_on_one_thread_sessions_and_agree_with_large_ones(tiny_bundle, mixed_batch, monkeypatch):
    x = mixed_batch[0]
    monkeypatch.setattr(ort_backend, "SMALL_CALL_MACS", 4 * max(r.macs for r in _manifest(tiny_bundle).routes))
    with Dispatcher.load(tiny_bundle.path) as d:
        assert {single for _, single in d.backend._sessions} == {True}  # what a batch of one needs
        big = d(x)  # a batch too large for one thread
        assert {single for _, single in d.backend._sessions} == {False, True}
        singles = [d(x[i:i + 1]) for i in range(len(x))]  # each small
        np.testing.assert_allclose(np.concatenate([r.logits for r in singles]), big.logits, atol=1e-6)
        assert [int(r.routes[0]) for r in singles] == big.routes.tolist()
    with Dispatcher.load(tiny_bundle.path, "ort", OrtOptions(threads=2)) as d:  # threads given: no one-thread sessions
        d(x[:1])
        assert {single for _, single in d.backend._sessions} == {False}


def test_bindings_per_thread_are_bounded(tiny_bundle, mixed_batch):
    pool = np.concatenate([mixed_batch[0]] * 3)
    with Dispatcher.load(tiny_bundle.path) as d:
        for n in range(1, MAX_BINDINGS_PER_THREAD // 2 + 8):
            np.testing.assert_allclose(d.run(pool[:n], route=1).logits[-1:],
                                       d.run(pool[n - 1:n], route=1).logits, atol=1e-6)
        assert len(d.backend._host._local.bindings) <= MAX_BINDINGS_PER_THREAD


def test_threads_keep_their_own_buffers(tiny_bundle, mixed_batch, run_threads):
    """Eight threads with the same batch size at once: each must get its own sample's answer."""
    x = mixed_batch[0]
    with Dispatcher.load(tiny_bundle.path) as d:
        expected = [d(x[i:i + 1]).logits for i in range(8)]

        def worker(i):
            for _ in range(50):
                np.testing.assert_allclose(d(x[i:i + 1]).logits, expected[i], atol=1e-6)

        assert not run_threads(worker, 8)


def test_result_fields_and_policy(dispatcher, mixed_batch):
    x, bias = mixed_batch
    forced = dispatcher.run(x[:3], route="uniform:4")
    info = dispatcher.routes[4]
    assert forced.routes.tolist() == [4, 4, 4] and forced.macs.tolist() == [info.macs] * 3
    assert forced.routes.dtype == np.int64 and "routes=array([4, 4, 4])" in repr(forced)
    assert dispatcher.run(x[:2], route="largest").gate_logits is None
    dispatcher.gate_bias = bias
    try:
        mixed = dispatcher(x[:8])
        assert len(set(mixed.routes.tolist())) > 1
        whole = dispatcher(x[:8], policy="whole-batch")
        assert len(set(whole.routes.tolist())) == 1
        dispatcher.policy = "whole-batch"
        assert dispatcher(x[:8]).routes.tolist() == whole.routes.tolist()
    finally:
        dispatcher.policy = "per-sample"
        dispatcher.gate_bias = None
    with pytest.raises(ValueError):
        dispatcher(x[:1], policy="everything")
    with pytest.raises(ValueError):
        dispatcher.policy = "everything"


def test_fast_run_falls_back_to_the_public_method():
    calls = []

    class Session:  # a future onnxruntime without the private attributes
        def run_with_iobinding(self, io):
            calls.append(io)

    fast_run(Session(), "io")()
    assert calls == ["io"]


def _manifest(bundle):
    from dsnet_export.runtime import load_bundle

    return load_bundle(bundle.path).manifest
