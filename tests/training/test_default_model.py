"""The shipped models: the embedded default (DS-MBNet, what `build` exports with no arguments) and the digits
DS-ResNet (`build --arch ds_resnet_digits`): shipped, small, genuinely dynamic, and as good as the README says."""

import subprocess
import sys

import pytest

from dsnet_export import load_supernet
from dsnet_export.datasets import load_digits
from dsnet_export.export.build import DEFAULT_MODEL, DEFAULT_NAME, shipped_weights
from dsnet_export.runtime import load_bundle
from training.evaluate import evaluate_model

#: The README's test-split tables (digits, 359 images): accuracy per gate route, then the dynamic network's.
README_ACCURACY = {
    "ds_mbnet_digits": ([0.9136, 0.9164, 0.9192, 0.9248], 0.9220),
    "ds_resnet_digits": ([0.9387, 0.9387, 0.9443, 0.9443], 0.9443),
}


@pytest.fixture(scope="module", params=sorted(README_ACCURACY))
def default_evaluation(request):
    path = shipped_weights(request.param)
    assert path is not None and path.stat().st_size <= 5 * 2**20, f"{request.param} must ship, small"
    model = load_supernet(path)
    assert model.spec.name == request.param
    return model, evaluate_model(model, load_digits(), "test")


def test_it_is_shipped_and_small():
    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size <= 5 * 2**20
    assert shipped_weights("ds_mbnet_digits") == DEFAULT_MODEL
    assert shipped_weights("ds_mbnet") is None


def test_the_readme_table_is_what_it_measures(default_evaluation):
    """One test image is 0.28 points: a borderline sample may flip on another CPU's float rounding, no more."""
    model, e = default_evaluation
    routes, dynamic = README_ACCURACY[model.spec.name]
    measured = {r.name: r.accuracy for r in e.routes}
    for k, expected in enumerate(routes):
        assert abs(measured[f"uniform:{k}"] - expected) <= 0.003, (k, measured)
    assert abs(e.dynamic_accuracy - dynamic) <= 0.003


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


def test_build_arch_exports_the_shipped_resnet_and_refuses_an_untrained_one(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dsnet_export", "build", "--arch", "ds_resnet_digits", "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    bundle = load_bundle(tmp_path / "engines" / "ds-resnet-digits")
    assert bundle.manifest.arch["name"] == "ds_resnet_digits" and len(bundle.manifest.routes) == 4
    refused = subprocess.run([sys.executable, "-m", "dsnet_export", "build", "--arch", "ds_resnet50", "--quiet"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0
    assert "no trained weights ship for 'ds_resnet50'" in refused.stderr and "--random-weights" in refused.stderr
