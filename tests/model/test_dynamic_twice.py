"""Dynamic routing keeps no state between calls: the official code's dynamic mode breaks on its second call (its
average pool keeps the previous batch's channel choice); here two calls in a row, with different batches and
routes, each give every sample its own route's logits -- in torch and through the dispatcher."""

from __future__ import annotations

import numpy as np
import torch

from dsnet_export.runtime import Dispatcher


def _own_routes(model, x, choice):
    """Each sample through its own gate route (the tiny model's gate outputs 0..3 are routes 0..3)."""
    with torch.no_grad():
        return torch.cat([model(x[i:i + 1], int(g)) for i, g in enumerate(choice)]).numpy()


def test_two_dynamic_calls_in_a_row_in_torch(tiny_model, mixed_batch):
    x, bias = mixed_batch
    x, bias = torch.from_numpy(x), torch.from_numpy(bias)
    first, second = x[:16], x[16:]
    with torch.no_grad():
        a = tiny_model.forward_dynamic(first, bias)
        b = tiny_model.forward_dynamic(second, -bias)  # other routes for other samples
        again = tiny_model.forward_dynamic(first, bias)
    assert len(set(a.gate_index.tolist())) > 1 and a.gate_index.tolist() != b.gate_index.tolist()
    np.testing.assert_allclose(a.logits.numpy(), _own_routes(tiny_model, first, a.gate_index), atol=1e-5, rtol=0)
    np.testing.assert_allclose(b.logits.numpy(), _own_routes(tiny_model, second, b.gate_index), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(again.logits.numpy(), a.logits.numpy())


def test_two_dynamic_calls_in_a_row_through_the_dispatcher(tiny_bundle, tiny_model, mixed_batch):
    x, bias = mixed_batch
    with Dispatcher.load(tiny_bundle.path) as d:
        d.gate_bias = bias
        a = d(x[:16])
        d.gate_bias = -bias
        b = d(x[16:])
        d.gate_bias = bias
        again = d(x[:16])
    assert len(set(a.routes.tolist())) > 1
    np.testing.assert_allclose(a.logits, _own_routes(tiny_model, torch.from_numpy(x[:16]), a.routes), atol=1e-4,
                               rtol=0)
    np.testing.assert_allclose(b.logits, _own_routes(tiny_model, torch.from_numpy(x[16:]), b.routes), atol=1e-4,
                               rtol=0)
    np.testing.assert_array_equal(again.logits, a.logits)
    np.testing.assert_array_equal(again.routes, a.routes)
