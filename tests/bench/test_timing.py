"""Interleaved blocks, rotation, paired ratios and medians, on fake clocks (no real timing is asserted)."""

import pytest

from dsnet_export.bench.timing import (
    Timings,
    calls_per_block,
    median,
    percentile,
    quartiles,
    rotation,
    run_blocks,
    wait_until_idle,
)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_rotation_starts_each_round_one_place_later():
    assert rotation(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert rotation(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert rotation(["a", "b", "c"], 5) == ["c", "a", "b"]
    assert rotation([], 3) == []


def test_blocks_run_back_to_back_in_rotating_groups_and_time_only_the_calls():
    clock, calls = FakeClock(), []
    cost = {"a": 0.004, "b": 0.010, "c": 0.002}  # seconds per call

    def contender(name):
        def call():
            calls.append(name)
            clock.now += cost[name]
        return call

    def settle():  # idle waiting is not part of any sample
        clock.now += 1000

    groups = [{"a": contender("a"), "b": contender("b")}, {"c": contender("c")}]
    t = run_blocks(groups, rounds=2, block_seconds=0.02, warmup_calls=2, clock=clock, settle=settle)
    # sizing round: one untimed + one timed call each; then blocks of 2 untimed + N timed calls
    assert t.calls == {"a": 5, "b": 3, "c": 10}  # 20 ms of calls, at least 3
    assert t.orders == [["c", "b", "a"], ["a", "b", "c"]]  # groups rotate, and so do their members
    expected = ["a", "a", "b", "b", "c", "c"] + ["c"] * 12 + ["b"] * 5 + ["a"] * 7 + ["a"] * 7 + ["b"] * 5 + ["c"] * 12
    assert calls == expected
    assert [[round(s, 9) for s in b] for b in t.blocks["a"]] == [[0.004] * 5, [0.004] * 5]
    assert t.median("b") == pytest.approx(0.010)
    assert t.ratio("b", "a") == pytest.approx(2.5)
    assert t.idle_wait_s == pytest.approx(9 * 1000)
    summary = t.summary("c")
    assert summary["rounds"] == 2 and summary["calls"] == 10 and len(summary["seconds"]) == 20


def test_ratio_is_the_median_of_per_round_ratios():
    t = Timings({"x": [[2.0], [4.0], [100.0]], "y": [[1.0], [2.0], [10.0]]})
    assert t.block_medians("x") == [2.0, 4.0, 100.0]
    assert t.ratio("x", "y") == 2.0  # rounds 1 and 2 agree; round 3's noise does not move it
    assert t.median("x") == 4.0


def test_calls_per_block_is_bounded():
    assert calls_per_block(0.001, 0.02) == 20
    assert calls_per_block(0.5, 0.02) == 3
    assert calls_per_block(1e-7, 0.02) == 50
    assert calls_per_block(0.0, 0.02) == 50


def test_progress_callback_sees_every_round_and_duplicates_are_refused():
    seen = []
    run_blocks([{"x": lambda: None}], rounds=2, on_round=seen.append)
    assert seen == [0, 1, 2]  # the sizing round first
    with pytest.raises(ValueError, match="twice"):
        run_blocks([{"x": lambda: None}, {"x": lambda: None}], rounds=1)


def test_median_and_quartiles():
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 2, 3]) == 2.5
    assert quartiles([5]) == (5, 5)
    lo, hi = quartiles([1, 2, 3, 4, 5])
    assert lo == 2 and hi == 4
    with pytest.raises(ValueError):
        median([])
    with pytest.raises(ValueError):
        run_blocks([{"x": lambda: None}], rounds=0)
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile([1, 2], 95) == pytest.approx(1.95)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_wait_until_idle_stops_once_the_process_is_quiet():
    wall = FakeClock()
    busy = [0.004, 0.004, 0.003, 0.0]  # CPU used during each successive window: spinning threads, then quiet
    cpu = {"t": 0.0, "i": 0}

    def cpu_clock():
        return cpu["t"]

    def sleep(s):
        wall.now += s
        cpu["t"] += busy[min(cpu["i"], len(busy) - 1)]
        cpu["i"] += 1

    waited = wait_until_idle(max_wait=1.0, window=0.004, cpu_clock=cpu_clock, clock=wall, sleep=sleep)
    assert waited == pytest.approx(4 * 0.004)
    cpu.update(t=0.0, i=0)
    busy[:] = [0.004]  # never quiet: gives up at the cap
    wall.now = 0.0
    assert wait_until_idle(max_wait=0.02, window=0.004, cpu_clock=cpu_clock, clock=wall, sleep=sleep) == \
        pytest.approx(0.02, abs=0.0041)
