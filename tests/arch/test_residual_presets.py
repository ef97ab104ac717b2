"""The residual presets (DS-ResNet-50, DS-ResNet-18, the digits DS-ResNet), checked three independent ways.

No official DS-ResNet exists to compare against, so for every gate route of every residual preset: the dense
ONNX engines (gate + route, emitted from the spec) equal the torch supernet's route and its dense twin, and all
equal a masked full-width forward (torch and ONNX: channels past the route zeroed, per-width BatchNorm); the cost
model's MAdds, parameters and BatchNorm buffers equal a count of the ONNX graphs themselves; and the widest
routes are ResNet-50 / ResNet-18 to the parameter (torchvision's published counts).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsnet_export.arch import gate_head_macs, get_arch, resolve_route, route_cost
from dsnet_export.bench.masking_torch import TorchMasking
from dsnet_export.export.build import state_arrays
from dsnet_export.graphs.masking import GATE_BIAS, emit_masked
from dsnet_export.model import Supernet
from tests.arch.test_families import _covering_bias, _session, engines, run_engines
from tests.conftest import onnx_macs, onnx_params, randomise, structured_inputs

RESIDUAL = ("ds_resnet50", "ds_resnet18", "ds_resnet_digits")
#: Batch and spatial size the parity runs at: every preset is fully convolutional, so a smaller image checks the
#: same weights in less time (ResNet-50 at 224 takes ~1 s per sample on 2 cores, masked at full width).
RUN = {"ds_resnet50": (4, 64), "ds_resnet18": (8, 64), "ds_resnet_digits": (48, 32)}


@pytest.fixture(scope="module", params=RESIDUAL)
def preset_model(request):
    torch.manual_seed(0)
    model = randomise(Supernet(get_arch(request.param)))
    with torch.no_grad():  # the zero-initialised last BatchNorm scales would hide every body behind its shortcut
        for name, p in model.named_parameters():
            if name.endswith("weight") and ".aux_bn." in name:
                p.copy_(torch.rand(p.shape) + 0.5)
    return model


def test_every_route_agrees_in_every_world(preset_model):
    """gate + route ONNX engines == supernet route == dense twin == masked (torch, ONNX), per sample, to 1e-4."""
    spec = preset_model.spec
    n, size = RUN[spec.name]
    x = structured_inputs(n, size=size)
    hw = (size, size)
    arrays = state_arrays(preset_model)
    with torch.no_grad():
        gate = preset_model.gate_logits(torch.from_numpy(x)).numpy()
    bias = _covering_bias(gate) if n >= 2 * spec.num_routes else -gate.mean(0)
    chosen = np.argmax(gate + bias, axis=1)
    own = np.zeros((n, spec.num_classes), np.float32)
    for index in range(spec.num_routes):
        gate_logits, logits = run_engines(arrays, spec, resolve_route(spec, index), hw, x)
        with torch.no_grad():
            expected = preset_model(torch.from_numpy(x), index).numpy()
            dense = preset_model.extract(index)(torch.from_numpy(x)).numpy()
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(logits, expected, atol=1e-4 * scale, rtol=1e-5)
        np.testing.assert_allclose(dense, expected, atol=1e-4 * scale, rtol=1e-5)
        np.testing.assert_allclose(gate_logits, gate, atol=1e-4, rtol=1e-5)
        own[chosen == index] = expected[chosen == index]
    masked_torch = TorchMasking(preset_model)(torch.from_numpy(x), torch.from_numpy(bias))
    np.testing.assert_array_equal(masked_torch.gate_index.numpy(), chosen)
    scale = max(1.0, float(np.abs(own).max()))
    np.testing.assert_allclose(masked_torch.logits.numpy(), own, atol=1e-4 * scale, rtol=1e-5)
    (masked_onnx,) = _session(emit_masked(spec, arrays, hw)).run(["logits"], {"image": x, GATE_BIAS: bias})
    np.testing.assert_allclose(masked_onnx, own, atol=1e-4 * scale, rtol=1e-5)


@pytest.mark.parametrize("name", RESIDUAL)
def test_cost_model_equals_a_count_of_the_engines(name):
    """MAdds, parameters and buffers of every route (and the gate's own work) from the cost model == the ONNX
    graphs' count at the spec's input size (gate engine up to the features + the route engine)."""
    spec = get_arch(name)
    model = Supernet(spec, device="meta")  # shapes only: nothing allocated
    arrays = {k: np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), v.shape, [0] * v.dim())
              for k, v in model.state_dict().items()}
    hw = (spec.input.height, spec.input.width)
    for index in range(spec.num_routes):
        gate, body = engines(arrays, spec, resolve_route(spec, index), hw)
        cost = route_cost(spec, index)
        assert cost.macs == onnx_macs(gate, ["features"]) + onnx_macs(body, ["logits"]), index
        counted = np.add(onnx_params(gate, ["features"]), onnx_params(body, ["logits"]))
        assert (cost.params, cost.buffers) == tuple(counted), index
        if index == 0:
            assert gate_head_macs(spec) == onnx_macs(gate, ["features", "gate_logits"]) - onnx_macs(gate, ["features"])


@pytest.mark.parametrize(("name", "params", "gmacs"), [("ds_resnet50", 25_557_032, 4.09),
                                                        ("ds_resnet18", 11_689_512, 1.81)])
def test_the_widest_route_is_the_torchvision_network(name, params, gmacs):
    """Route 3 = largest = ResNet-50 / ResNet-18: torchvision's published parameter counts exactly and its GFLOPS
    (multiply-adds) within 1 %; the smallest route inside the papers' "2-4x computation reduction"."""
    spec = get_arch(name)
    widest = route_cost(spec, 3)
    assert widest == route_cost(spec, "largest")
    assert widest.params == params
    assert abs(widest.macs / 1e9 - gmacs) / gmacs < 0.01
    reduction = widest.macs / route_cost(spec, 0).macs
    assert 1.5 < reduction <= 4.0 or name == "ds_resnet50" and 2.0 <= reduction <= 4.0, reduction


def test_dynamic_routing_through_the_dispatcher_equals_torch(tmp_path):
    """A residual bundle's dispatcher routes every sample as the torch supernet's dynamic forward does, and gives
    that route's logits; two calls in a row with other samples and biases keep nothing from the first."""
    from dsnet_export.export import build_bundle
    from dsnet_export.runtime import Dispatcher

    torch.manual_seed(0)
    model = randomise(Supernet(get_arch("ds_resnet_digits")))
    report = build_bundle(model=model, out=tmp_path / "resnet", progress=False, name="resnet")
    x = structured_inputs(48)
    with torch.no_grad():
        gate = model.gate_logits(torch.from_numpy(x)).numpy()
    bias = _covering_bias(gate)
    with Dispatcher.load(report.path) as dispatcher:
        for batch, b in ((x[:24], bias), (x[24:], -bias), (x[:24], bias)):
            dispatcher.gate_bias = b
            out = dispatcher(batch)
            with torch.no_grad():
                expected = model.forward_dynamic(torch.from_numpy(batch), torch.from_numpy(b))
            np.testing.assert_array_equal(out.routes, expected.gate_index.numpy())
            np.testing.assert_allclose(out.logits, expected.logits.numpy(), atol=1e-4, rtol=1e-5)
        assert len(set(out.routes.tolist())) > 1
