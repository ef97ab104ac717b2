"""Interleaved rounds, rotation and medians, on fake clocks (no real timing is asserted anywhere)."""

import pytest

from dsnet_export.bench.timing import median, quartiles, rotation, run_rounds, wait_until_idle


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


def test_rounds_run_every_contender_once_in_rotating_order_and_time_only_the_call():
    clock, calls = FakeClock(), []
    durations = {"a": [5, 1, 2, 3], "b": [10, 20, 30, 40], "c": [7, 7, 7, 100]}

    def contender(name):
        def call():
            calls.append(name)
            clock.now += durations[name][sum(1 for c in calls if c == name) - 1]
        return call

    def settle():  # idle waiting is not part of any sample
        clock.now += 1000

    t = run_rounds({n: contender(n) for n in "abc"}, rounds=3, warmup=1, clock=clock, settle=settle)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert t.orders == [["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert t.samples == {"a": [1, 2, 3], "b": [20, 30, 40], "c": [7, 7, 100]}  # warm-up round dropped
    assert t.medians() == {"a": 2, "b": 30, "c": 7}
    assert t.idle_wait_s == 12 * 1000
    summary = t.summary("c")
    assert summary["median_s"] == 7 and summary["rounds"] == 3 and summary["min_s"] == 7
    assert summary["p25_s"] <= summary["median_s"] <= summary["p75_s"]


def test_progress_callback_sees_every_round():
    seen = []
    run_rounds({"x": lambda: None}, rounds=2, warmup=2, on_round=seen.append)
    assert seen == [0, 1, 2, 3]


def test_median_and_quartiles():
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 2, 3]) == 2.5
    assert quartiles([5]) == (5, 5)
    lo, hi = quartiles([1, 2, 3, 4, 5])
    assert lo == 2 and hi == 4
    with pytest.raises(ValueError):
        median([])
    with pytest.raises(ValueError):
        run_rounds({"x": lambda: None}, rounds=0)


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
