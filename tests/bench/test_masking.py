"""Both masking baselines (PyTorch and ONNX) equal each sample's own route, as the official masking does."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from dsnet_export.bench.contenders import BundleContext
from dsnet_export.bench.masking_torch import TorchMasking, masked_forward
from dsnet_export.export.build import state_arrays
from dsnet_export.export.from_bundle import supernet_from_bundle
from dsnet_export.graphs.masking import GATE_BIAS, emit_masked, masking_width
from dsnet_export.runtime import Dispatcher, load_bundle

ATOL = 1e-5


def _per_sample(model, x, routes):
    with torch.no_grad():
        return torch.cat([model(torch.from_numpy(x[i:i + 1]), int(g)) for i, g in enumerate(routes)]).numpy()


def _run_masked_onnx(proto, x, bias):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits", "gate_logits"], {"image": x, GATE_BIAS: bias})


@pytest.mark.parametrize("official_ops", [False, True])
def test_torch_masking_equals_each_samples_route(tiny_model, mixed_batch, official_ops):
    x, bias = mixed_batch
    out = masked_forward(tiny_model, torch.from_numpy(x), torch.from_numpy(bias), official_ops=official_ops)
    with torch.no_grad():
        gate = tiny_model.gate_logits(torch.from_numpy(x)).numpy()
    routes = np.argmax(gate + bias, axis=1)
    assert out.gate_index.tolist() == routes.tolist()
    assert len(set(routes.tolist())) == 4
    np.testing.assert_allclose(out.logits.numpy(), _per_sample(tiny_model, x, routes), atol=ATOL, rtol=0)
    np.testing.assert_allclose(out.gate_logits.numpy(), gate, atol=ATOL, rtol=0)


def test_torch_masking_without_bias_follows_the_gate_argmax(tiny_model, mixed_batch):
    x, _ = mixed_batch
    out = TorchMasking(tiny_model)(torch.from_numpy(x))
    routes = out.gate_logits.argmax(1)
    assert out.gate_index.tolist() == routes.tolist()
    np.testing.assert_allclose(out.logits.numpy(), _per_sample(tiny_model, x, routes.tolist()), atol=ATOL, rtol=0)


def test_onnx_masking_equals_each_samples_route(tiny_model, mixed_batch):
    x, bias = mixed_batch
    proto = emit_masked(tiny_model.spec, state_arrays(tiny_model), (32, 32))
    onnx.checker.check_model(proto, full_check=True)
    logits, gate_logits = _run_masked_onnx(proto, x, bias)
    routes = np.argmax(gate_logits + bias, axis=1)
    assert len(set(routes.tolist())) == 4
    np.testing.assert_allclose(logits, _per_sample(tiny_model, x, routes), atol=ATOL, rtol=0)
    # The full width really is uniform:<last>: the last stage's pointwise conv has all its channels.
    assert masking_width(tiny_model.spec) == "uniform:4"
    conv = next(i for i in proto.graph.initializer if i.name == "blocks.3.first_block.conv_pw.weight")
    assert list(conv.dims) == [128, 64, 1, 1]


def test_masking_from_bundle_tensors_equals_the_dispatcher(tiny_bundle, mixed_batch):
    """Built from the bundle alone (tensors cut to the exported routes, the rest zero-filled)."""
    x, bias = mixed_batch
    ctx = BundleContext.open(load_bundle(tiny_bundle.path))
    with Dispatcher.load(tiny_bundle.path) as dispatcher:
        dispatcher.gate_bias = bias
        expected = dispatcher(x)
    onnx_logits, _ = _run_masked_onnx(emit_masked(ctx.spec, ctx.sources, ctx.input_hw), x, bias)
    np.testing.assert_allclose(onnx_logits, expected.logits, atol=ATOL, rtol=0)
    net = supernet_from_bundle(ctx.spec, ctx.sources)
    for official_ops in (False, True):
        out = TorchMasking(net, official_ops=official_ops)(torch.from_numpy(x), torch.from_numpy(bias))
        assert out.gate_index.tolist() == expected.routes.tolist()  # gate routes 0..3 are manifest routes 0..3 here
        np.testing.assert_allclose(out.logits.numpy(), expected.logits, atol=ATOL, rtol=0)

