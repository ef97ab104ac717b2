"""Library pieces the apps use: labels, top-k, run statistics, the online budget, URIs."""

import numpy as np
import pytest

from dsnet_export import DsnetError
from dsnet_export.media import open_sink, open_source
from dsnet_export.media.sources import CSI_PIPELINE
from dsnet_export.runtime import OnlineBudget, RunStats, load_labels
from dsnet_export.runtime.budget import parse_macs, routing_macs
from dsnet_export.runtime.postprocess import softmax, top_k


def test_labels(tmp_path):
    assert load_labels(None, 3) == ["0", "1", "2"]
    path = tmp_path / "l.txt"
    path.write_text("cat\ndog\n\n")
    assert load_labels(path, 2) == ["cat", "dog"]
    with pytest.raises(DsnetError, match="2 labels for a model with 3 classes"):
        load_labels(path, 3)


def test_top_k_and_softmax():
    logits = np.array([1.0, 3.0, 2.0], np.float32)
    assert [c for c, _ in top_k(logits, 2)] == [1, 2]
    np.testing.assert_allclose(softmax(logits).sum(), 1.0, rtol=1e-6)
    assert top_k(np.array([1000.0, 0.0]), 1)[0] == (0, 1.0)


@pytest.mark.parametrize("text, value", [("150M", 150e6), ("1.2G", 1.2e9), ("800k", 8e5), ("12345", 12345.0)])
def test_parse_macs(text, value):
    assert parse_macs(text) == pytest.approx(value)
    with pytest.raises(ValueError):
        parse_macs("lots")


def test_run_stats_summary(tiny_bundle):
    routes = tiny_bundle.manifest.routes
    stats = RunStats(routes)
    stats.add(np.array([0, 0, 3]), np.array([routes[0].macs] * 2 + [routes[3].macs]), 0.01)
    stats.add(np.array([3]), np.array([routes[3].macs]), 0.02)
    text = stats.summary()
    assert text.startswith("4 frames; average")
    assert stats.average_macs == pytest.approx((2 * routes[0].macs + 2 * routes[3].macs) / 4)
    assert "mean latency 15.0 ms" in text  # route 3 was in both calls


def test_online_budget_converges_to_the_target():
    rng = np.random.default_rng(0)
    macs = [100, 150, 200, 250]
    budget = OnlineBudget(macs, 140, window=200, every=20)
    averages = []
    for _ in range(40):
        logits = rng.standard_normal((10, 4)).astype(np.float32)
        bias = budget.update(logits)
        averages.append(routing_macs(logits, np.array(macs, float), bias)[0])
    assert np.mean(averages[10:]) <= 150 and np.mean(averages[:2]) > 150
    with pytest.raises(DsnetError, match="below the cheapest"):
        OnlineBudget(macs, 50)


def test_source_uris(tmp_path):
    assert "nvarguscamerasrc sensor-id=0" in CSI_PIPELINE.format(sensor=0, width=1280, height=720, fps=30)
    with pytest.raises(DsnetError, match="no such file"):
        open_source(str(tmp_path / "nothing.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DsnetError, match="no images"):
        open_source(str(tmp_path / "empty"))
    with pytest.raises(DsnetError, match="give a folder"):
        open_sink(str(tmp_path / "out.png"))
