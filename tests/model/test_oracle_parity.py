"""Parity with the official DS-Net code, through ../shared/oracle reference logits."""

import numpy as np
import pytest
import torch

from dsnet_export import load_supernet

ATOL = 1e-4
ROUTES = [("largest", "logits_largest"), ("smallest", "logits_smallest"), ("uniform:0", "logits_uniform_k00"),
          ("uniform:3", "logits_uniform_k03"), ("uniform:13", "logits_uniform_k13"), (0, "logits_uniform_k00"),
          (3, "logits_uniform_k03")]


@pytest.fixture(scope="module")
def official(oracle):
    model = load_supernet(oracle / "dsmbnet_oracle.pth.tar")
    x = torch.from_numpy(np.load(oracle / "oracle_inputs.npz")["X"])
    ref = dict(np.load(oracle / "reference_logits.npz"))
    return model, x, ref


@pytest.mark.parametrize("route, key", ROUTES)
@torch.no_grad()
def test_forward_matches_official(official, route, key):
    model, x, ref = official
    np.testing.assert_allclose(model(x, route).numpy(), ref[key], atol=ATOL, rtol=0)


@pytest.mark.parametrize("route, key", ROUTES[:5])
@torch.no_grad()
def test_extracted_subnet_matches_official(official, route, key):
    model, x, ref = official
    np.testing.assert_allclose(model.extract(route)(x).numpy(), ref[key], atol=ATOL, rtol=0)


@torch.no_grad()
def test_gate_and_pooled_features_match_official(official):
    model, x, ref = official
    np.testing.assert_allclose(model.gate_logits(x).numpy(), ref["gate_logits"], atol=ATOL, rtol=0)
    hidden = model.pre_gate(x)[1].flatten(1)
    np.testing.assert_allclose(hidden.numpy(), ref["gate_x_reduced"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(model.pooled_features(x, "uniform:0").numpy(), ref["pooled_uniform_k00"],
                               atol=ATOL, rtol=0)


@torch.no_grad()
def test_gate_routes_are_the_official_widths(official):
    model, _, ref = official
    stage3 = [r.widths(model.spec)[4] for r in model.routes]
    stage4 = [r.widths(model.spec)[5] for r in model.routes]
    assert stage3 == ref["gate_widths_stage3"].tolist() and stage4 == ref["gate_widths_stage4"].tolist()


@torch.no_grad()
def test_dynamic_forward_equals_official_dynamic(official):
    """The official masking forward equals, per sample, the uniform-g logits of its gate argmax."""
    model, x, ref = official
    out = model.forward_dynamic(x)
    expected_routes = ref["gate_logits"].argmax(1)
    assert out.gate_index.tolist() == expected_routes.tolist()
    assert set(expected_routes.tolist()) == {0, 1, 2, 3}
    for i, g in enumerate(expected_routes):
        np.testing.assert_allclose(out.logits[i].numpy(), model(x[i:i + 1], int(g))[0].numpy(), atol=ATOL, rtol=0)
    for g, key in [(0, "logits_uniform_k00"), (3, "logits_uniform_k03")]:
        rows = expected_routes == g
        np.testing.assert_allclose(out.logits.numpy()[rows], ref[key][rows], atol=ATOL, rtol=0)
