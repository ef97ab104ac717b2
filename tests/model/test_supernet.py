"""The stateless supernet on the registered architectures (random weights, no shared data)."""

import pytest
import torch

from dsnet_export.arch import get_arch, list_archs
from dsnet_export.model import Supernet


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return tiny_model


def _all_routes(spec):
    return [*range(spec.num_routes), "largest", "smallest",
            *(f"uniform:{k}" for k in range(spec.num_uniform_choices))]


@torch.no_grad()
def test_extract_matches_forward_for_every_route(tiny):
    x = torch.randn(3, 3, 32, 32)
    for route in _all_routes(tiny.spec):
        dense = tiny.extract(route)
        assert not any(isinstance(m, torch.nn.ModuleList) for m in dense.modules())
        torch.testing.assert_close(dense(x), tiny(x, route), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_extract_has_exactly_the_route_parameters(tiny):
    for route in _all_routes(tiny.spec):
        dense = tiny.extract(route)
        n_params = sum(p.numel() for p in dense.parameters())
        assert n_params == tiny.cost(route).params


@torch.no_grad()
def test_routes_differ_and_calls_do_not_leak_state(tiny):
    x = torch.randn(2, 3, 32, 32)
    first = {r: tiny(x, r) for r in _all_routes(tiny.spec)}
    # Interleave in another order: a stored width would change the results.
    for r in reversed(_all_routes(tiny.spec)):
        torch.testing.assert_close(tiny(x, r), first[r], atol=0, rtol=0)
    assert not torch.allclose(first[0], first[3])
    assert not torch.allclose(first["largest"], first["uniform:4"])


@torch.no_grad()
def test_dynamic_forward_equals_each_samples_route(tiny, mixed_batch):
    # Inputs and a gate bias that spread the batch over every route, in interleaved order: a forward that
    # ran one route for all, ignored the bias or put a group's logits back in the wrong rows would show.
    x, bias = (torch.from_numpy(a) for a in mixed_batch)
    expected_routes = (tiny.gate_logits(x) + bias).argmax(1)
    assert torch.bincount(expected_routes, minlength=4).min() >= 2, "the batch must take every route"
    assert (expected_routes != tiny.gate_logits(x).argmax(1)).any(), "the bias must change some routes"
    out = tiny.forward_dynamic(x, bias)
    assert out.gate_index.tolist() == expected_routes.tolist()
    torch.testing.assert_close(out.gate_logits, tiny.gate_logits(x))
    for i in range(x.shape[0]):
        expected = tiny(x[i:i + 1], int(expected_routes[i]))
        torch.testing.assert_close(out.logits[i:i + 1], expected, atol=1e-5, rtol=1e-5)
    # Without a bias: the plain argmax.
    assert tiny.forward_dynamic(x).gate_index.tolist() == tiny.gate_logits(x).argmax(1).tolist()


@torch.no_grad()
def test_gate_bias_steers_routes(tiny):
    x = torch.randn(8, 3, 32, 32)
    out = tiny.forward_dynamic(x, torch.tensor([0.0, 0.0, 0.0, 1e6]))
    assert out.gate_index.tolist() == [3] * 8


def test_device_and_dtype_come_from_the_caller():
    model = Supernet(get_arch("ds_mbnet_tiny"), dtype=torch.float64).eval()
    assert all(p.dtype == torch.float64 for p in model.parameters())
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32, dtype=torch.float64), 0).dtype == torch.float64
    meta = Supernet(get_arch("ds_mbnet"), device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters())


def test_training_step_updates_only_the_route_statistics():
    torch.manual_seed(1)
    model = Supernet(get_arch("ds_mbnet_tiny")).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = model(torch.randn(4, 3, 32, 32), 1).logsumexp(1).mean()
    loss.backward()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # route 1 = uniform:1: stages before the gate at choice 0, gated stage on at choice 1.
    assert "blocks.2.first_block.bn2.aux_bn.1.running_mean" in changed
    assert "blocks.2.first_block.bn2.aux_bn.0.running_mean" not in changed
    assert "blocks.0.first_block.bn2.aux_bn.0.running_mean" in changed
    assert model.classifier.weight.grad is not None


@pytest.mark.parametrize("name", list_archs())
def test_every_registered_arch_builds_and_its_keys_are_official_style(name):
    spec = get_arch(name)
    keys = Supernet(spec, device="meta").state_dict().keys()
    assert "conv_stem.weight" in keys and "classifier.weight" in keys
    assert f"blocks.{spec.gate.stage}.first_block.gate.gate.0.weight" in keys
