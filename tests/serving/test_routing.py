"""The serving core: routes chosen as the dispatcher chooses them, groups and reassembly in input order, and the
keyed asyncio batcher (batches across submissions, limits, errors)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsnet_export import DsnetError
from dsnet_export.runtime import Dispatcher, load_bundle
from dsnet_export.runtime.backends.ort import OrtBackend
from dsnet_export.serving import KeyedBatcher, RouteTable
from dsnet_export.serving.routing import split_rows


@pytest.fixture(scope="module")
def table(tiny_bundle):
    return RouteTable.from_bundle(tiny_bundle.path)


def test_the_core_with_the_bundles_engines_equals_the_dispatcher(tiny_bundle, mixed_batch):
    """Gate engine -> choose -> group -> route engines -> assemble gives the dispatcher's logits and routes."""
    x, bias = mixed_batch
    bundle = load_bundle(tiny_bundle.path)
    table = RouteTable.from_manifest(bundle.manifest, bias)
    backend = OrtBackend(bundle)
    try:
        features, gate_logits, _ = backend.run_gate(x)
        chosen = table.choose(gate_logits)
        groups = table.groups(chosen)
        assert len(groups) >= 3
        parts = [(g, backend.run_route(bundle.manifest.routes[g.route], features[g.rows], None)) for g in groups]
        logits = table.assemble(len(x), parts)
    finally:
        backend.close()
    with Dispatcher.load(tiny_bundle.path) as d:
        d.gate_bias = bias
        expected = d(x)
    np.testing.assert_array_equal(chosen, expected.routes)
    np.testing.assert_array_equal(logits, expected.logits)


@settings(max_examples=200, deadline=None)
@given(chosen=st.lists(st.integers(0, 5), min_size=1, max_size=64))
def test_groups_and_assemble_put_every_row_back(table, chosen):
    chosen = np.array(chosen, np.int64)
    groups = table.groups(chosen)
    assert sorted(np.concatenate([g.rows for g in groups]).tolist()) == list(range(len(chosen)))
    assert all((chosen[g.rows] == g.route).all() for g in groups)
    parts = [(g, np.repeat(g.rows[:, None].astype(np.float32), table.num_classes, 1)) for g in groups]
    logits = table.assemble(len(chosen), parts)
    np.testing.assert_array_equal(logits[:, 0], np.arange(len(chosen)))


def test_assemble_refuses_a_wrong_shape_or_missing_rows(table):
    groups = table.groups(np.array([0, 1, 0]))
    with pytest.raises(DsnetError, match="returned shape"):
        table.assemble(3, [(groups[0], np.zeros((1, table.num_classes), np.float32))])
    with pytest.raises(DsnetError, match="cover 2 of 3"):
        table.assemble(3, [(groups[0], np.zeros((2, table.num_classes), np.float32))])


def test_a_bad_bias_is_refused(tiny_bundle):
    bundle = load_bundle(tiny_bundle.path)
    for bias in ([0.0], [np.nan] * 4, "x"):
        with pytest.raises((DsnetError, ValueError)):
            RouteTable.from_manifest(bundle.manifest, bias)


def test_split_rows():
    assert split_rows(5, None) == [slice(0, 5)]
    assert split_rows(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert split_rows(2, 8) == [slice(0, 2)]


# -- the batcher --------------------------------------------------------------------------------------------------
def _batcher(calls, **kw):
    async def run(key, batch):
        calls.append((key, len(batch)))
        await asyncio.sleep(0)
        return batch * 2 + key
    return KeyedBatcher(run, **kw)


def test_concurrent_submissions_for_one_key_run_as_one_batch():
    calls = []

    async def main():
        b = _batcher(calls, max_samples=64, max_wait_ms=20)
        xs = [np.full((n, 3), i, np.float32) for i, n in enumerate([1, 2, 3, 1])]
        outs = await asyncio.gather(*(b.submit(7, x) for x in xs), b.submit(1, xs[0]))
        for x, out in zip(xs, outs):
            np.testing.assert_array_equal(out, x * 2 + 7)
        np.testing.assert_array_equal(outs[-1], xs[0] * 2 + 1)
        return b.stats

    stats = asyncio.run(main())
    assert sorted(calls) == [(1, 1), (7, 7)]
    assert stats[7].submissions == 4 and stats[7].mean_rows == 7


def test_a_full_queue_runs_without_waiting_and_big_batches_are_split():
    calls = []

    async def main():
        b = _batcher(calls, max_samples=4, max_wait_ms=10_000, max_batch=3)
        start = time.monotonic()
        outs = await asyncio.gather(*(b.submit(0, np.full((2, 1), i, np.float32)) for i in range(4)),
                                    b.submit(0, np.zeros((10, 1), np.float32)))
        return time.monotonic() - start, outs

    elapsed, outs = asyncio.run(main())
    assert elapsed < 5  # never waited the 10 s
    assert all(n <= 3 for _, n in calls) and sum(n for _, n in calls) == 18
    assert [len(o) for o in outs] == [2, 2, 2, 2, 10]


def test_an_engine_error_reaches_every_submitter_of_its_batch_only():
    async def run(key, batch):
        if key == "bad":
            raise RuntimeError("engine failed")
        return batch

    async def main():
        b = KeyedBatcher(run, max_samples=8, max_wait_ms=5)
        results = await asyncio.gather(b.submit("bad", np.zeros((1, 1))), b.submit("bad", np.zeros((2, 1))),
                                       b.submit("ok", np.ones((1, 1))), return_exceptions=True)
        again = await b.submit("ok", np.ones((3, 1)))
        return results, again

    results, again = asyncio.run(main())
    assert [type(r) for r in results[:2]] == [RuntimeError, RuntimeError]
    np.testing.assert_array_equal(results[2], np.ones((1, 1)))
    assert again.shape == (3, 1)


def test_a_plain_function_runs_off_the_event_loop():
    seen = []

    def run(key, batch):  # blocking, as an ONNX Runtime session is
        time.sleep(0.01)
        seen.append(len(batch))
        return batch

    async def main():
        b = KeyedBatcher(run, max_samples=100, max_wait_ms=2)
        return await asyncio.gather(*(b.submit("k", np.zeros((1, 2))) for _ in range(5)))

    assert len(asyncio.run(main())) == 5 and sum(seen) == 5


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        KeyedBatcher(lambda k, b: b, max_samples=0)
    with pytest.raises(ValueError):
        KeyedBatcher(lambda k, b: b, max_batch=0)


def test_while_the_engine_is_busy_its_queue_grows_into_one_batch():
    """max_inflight=1: submissions made while a batch runs go together as the next batch, with no extra wait;
    without the limit each would run as soon as its own wait ends."""
    def drive(limit):
        sizes = []

        async def run(key, batch):
            sizes.append(len(batch))
            await asyncio.sleep(0.05)  # a slow engine
            return batch

        async def main():
            b = KeyedBatcher(run, max_samples=64, max_wait_ms=1, max_inflight=limit)
            first = asyncio.ensure_future(b.submit(0, np.zeros((1, 1))))
            await asyncio.sleep(0.01)  # the first batch is running now
            rest = []
            for _ in range(6):
                rest.append(asyncio.ensure_future(b.submit(0, np.zeros((1, 1)))))
                await asyncio.sleep(0.005)
            await asyncio.gather(first, *rest)
        asyncio.run(main())
        return sizes

    assert drive(1) == [1, 6]
    assert len(drive(None)) > 2


def test_max_inflight_per_key():
    with pytest.raises(ValueError):
        KeyedBatcher(lambda k, b: b, max_inflight=0)
    with pytest.raises(ValueError):
        KeyedBatcher(lambda k, b: b, max_inflight={"a": 0})
