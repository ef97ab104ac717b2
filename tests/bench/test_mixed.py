"""Choosing a batch whose samples take several routes."""

import numpy as np
import pytest

from dsnet_export.bench.mixed import balance_bias, choose_mixed, synthetic_pool


def test_gate_choices_are_used_as_they_are_when_already_mixed():
    logits = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1, 2, 3, 0, 0]]
    choice = choose_mixed(logits, 8)
    assert not choice.biased and np.all(choice.bias == 0)
    assert choice.routes.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert np.argmax(logits[choice.indexes], axis=1).tolist() == choice.routes.tolist()
    assert len(set(choice.indexes.tolist())) == 8


def test_a_bias_spreads_a_pool_the_gate_sends_to_one_route():
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((64, 4)) * 0.3 + np.array([3.0, 0.0, -1.0, -2.0])).astype(np.float32)
    assert len(set(np.argmax(logits, axis=1).tolist())) < 4
    choice = choose_mixed(logits, 8)
    assert choice.biased
    assert np.argmax(logits[choice.indexes] + choice.bias, axis=1).tolist() == choice.routes.tolist()
    assert sorted(choice.routes.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    counts = np.bincount(np.argmax(logits + balance_bias(logits), axis=1), minlength=4)
    assert counts.min() >= 8


def test_short_routes_are_filled_from_the_others():
    logits = np.eye(2, dtype=np.float32)[[0, 0, 0, 0, 1]]
    choice = choose_mixed(logits, 4)
    assert sorted(choice.routes.tolist()) == [0, 0, 0, 1]
    with pytest.raises(ValueError):
        choose_mixed(logits, 6)


def test_synthetic_pool_shape_and_determinism():
    a = synthetic_pool(5, (3, 8, 8), seed=1)
    assert a.shape == (5, 3, 8, 8) and a.dtype == np.float32
    assert np.array_equal(a, synthetic_pool(5, (3, 8, 8), seed=1))
