"""The DS-MBNet oracle exported: engines vs the official code's reference logits."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import route_onnx_macs

from dsnet_export.export import build_bundle

ATOL = 1e-4
# The official DS-MBNet table (README, ARCHITECTURE.md section 6): MAdds of uniform:0..3, the oracle's gate routes.
OFFICIAL_GATE_ROUTE_MADDS = [132.89, 152.92, 175.15, 199.59]


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def oracle_data(oracle):
    return np.load(oracle / "oracle_inputs.npz")["X"], dict(np.load(oracle / "reference_logits.npz"))


@pytest.fixture(scope="module")
def engine_outputs(oracle_bundle, oracle_data):
    x, _ = oracle_data
    root, m = oracle_bundle.path, oracle_bundle.manifest
    features, gate_logits = _session(root / m.gate.file).run(["features", "gate_logits"], {"image": x})
    logits = [_session(root / r.file).run(["logits"], {"features": features})[0] for r in m.routes]
    return gate_logits, logits


def test_gate_engine_matches_official_gate(engine_outputs, oracle_data):
    np.testing.assert_allclose(engine_outputs[0], oracle_data[1]["gate_logits"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("route, key", [(0, "logits_uniform_k00"), (3, "logits_uniform_k03")])
def test_route_engines_match_official_logits(engine_outputs, oracle_data, route, key):
    np.testing.assert_allclose(engine_outputs[1][route], oracle_data[1][key], atol=ATOL, rtol=0)


@torch.no_grad()
def test_every_route_matches_the_supernet(engine_outputs, oracle_data, oracle_model):
    x = torch.from_numpy(oracle_data[0])
    for g, logits in enumerate(engine_outputs[1]):
        np.testing.assert_allclose(logits, oracle_model(x, g).numpy(), atol=ATOL, rtol=0)


def test_manifest_madds_are_the_official_ones_and_the_engines_own(oracle_bundle):
    m = oracle_bundle.manifest
    gate_routes = [m.routes[k] for k in m.gate.routes]
    assert [r.name for r in gate_routes] == [f"uniform:{k}" for k in range(4)]
    assert [round(r.macs / 1e6, 2) for r in gate_routes] == OFFICIAL_GATE_ROUTE_MADDS
    assert [r.macs for r in m.routes] == [route_onnx_macs(oracle_bundle.path, m, r) for r in m.routes]


def test_weights_stored_once(oracle_bundle):
    sizes = oracle_bundle.sizes
    assert sizes.vs_widest <= 1.05, sizes
    assert sizes.vs_standalone < 0.35, sizes


def test_other_input_size_on_the_oracle(oracle_model, tmp_path):
    # build's own parity check compares every engine with the torch supernet at 160x160.
    with pytest.warns(UserWarning, match="trained at"):
        report = build_bundle(model=oracle_model, out=tmp_path / "b160", input_size=(160, 160), progress=False)
    assert report.manifest.gate.features_shape == [96, 10, 10]
    assert report.parity and all(row.ok for row in report.parity)
