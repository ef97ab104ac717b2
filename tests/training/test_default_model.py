"""The embedded default model: shipped, small, genuinely dynamic, and what `build` exports with no arguments."""

import subprocess
import sys

import pytest

from dsnet_export import load_supernet
from dsnet_export.datasets import load_digits
from dsnet_export.export.build import DEFAULT_MODEL, DEFAULT_NAME
from dsnet_export.runtime import load_bundle
from training.evaluate import evaluate_model


@pytest.fixture(scope="module")
def default_evaluation():
    model = load_supernet(DEFAULT_MODEL)
    return model, evaluate_model(model, load_digits(), "test")


def test_it_is_shipped_and_small():
    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size <= 5 * 2**20


def test_it_routes_for_real_on_the_digits_test_split(default_evaluation):
    model, e = default_evaluation
    accuracy = {r.name: r.accuracy for r in e.routes}
    assert e.dynamic_accuracy >= accuracy["uniform:0"]
    assert sum(n >= 0.1 * e.samples for n in e.histogram) >= 2, e.histogram
    assert e.dynamic_macs < model.cost(model.spec.num_routes - 1).macs
    assert min(accuracy.values()) > 0.8


def test_build_without_arguments_exports_it(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dsnet_export", "build", "--quiet"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    bundle = load_bundle(tmp_path / "engines" / DEFAULT_NAME)
    assert bundle.manifest.arch["name"] == "ds_mbnet_digits" and len(bundle.manifest.routes) == 4
