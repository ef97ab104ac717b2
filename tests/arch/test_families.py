"""Every registered block family is complete in every world and agrees with itself across them.

Parametrized over the registry: a new family gets these checks by registering.  For each family a
small spec whose every stage uses it is built, and its torch module (supernet and dense twin), its
ONNX emitter (gate + route engines in ONNX Runtime), both masked forms and its cost must agree.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnxruntime as ort
import pytest
import torch

from dsnet_export.arch import (
    BlockFamily,
    block_family,
    family_names,
    get_arch,
    iter_blocks,
    register_family,
    resolve_route,
    route_cost,
)
from dsnet_export.arch.families import WORLDS
from dsnet_export.arch.spec import ACTIVATIONS
from dsnet_export.bench.masking_torch import TorchMasking
from dsnet_export.errors import SpecError
from dsnet_export.export.build import state_arrays
from dsnet_export.graphs.emit import emit_engine
from dsnet_export.graphs.graph import EmbeddedBinding, Graph
from dsnet_export.graphs.masking import GATE_BIAS, emit_masked
from dsnet_export.model import Supernet
from tests.conftest import randomise, structured_inputs

HW = (32, 32)


#: Every family, and the ds family with the official blocks' shortcut on every stage it may have one.
VARIANTS = (*family_names(), "ds+residual")


def _spec_of(variant: str, activation: str = "swish"):
    base = get_arch("ds_mbnet_tiny")
    family, _, option = variant.partition("+")
    stages = tuple(dataclasses.replace(s, block=family, residual=option == "residual" and i != base.gate.stage)
                   for i, s in enumerate(base.stages))
    return dataclasses.replace(base, name=f"tiny_{family}{option}_{activation}", activation=activation, stages=stages)


@pytest.fixture(scope="module", params=[(f, a) for f in VARIANTS for a in ACTIVATIONS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def family_model(request):
    """Every family under every activation a spec may name (ResNets use ReLU, DS-MBNet swish)."""
    torch.manual_seed(0)
    return randomise(Supernet(_spec_of(*request.param)))


def _session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def engines(arrays, spec, route, hw):
    """(gate engine, route engine) of ``route`` as ONNX models with the weights ``arrays`` embedded."""
    return tuple(emit_engine(Graph(part, EmbeddedBinding(arrays)), spec, route, part, hw, 17)
                 for part in ("gate", "route"))


def run_engines(arrays, spec, route, hw, x):
    """(gate logits, route logits) of ``x`` through both engines in ONNX Runtime, as the dispatcher chains them."""
    gate, body = (_session(proto) for proto in engines(arrays, spec, route, hw))
    features, gate_logits = gate.run(["features", "gate_logits"], {"image": x})
    return gate_logits, body.run(["logits"], {"features": features})[0]


@pytest.mark.parametrize("name", family_names())
def test_family_has_every_part(name):
    family = block_family(name)
    assert family.name == name
    assert family.missing_parts() == []
    assert set(family.parts) == set(WORLDS)


def test_an_incomplete_family_names_what_it_lacks():
    ds = block_family("ds")
    partial = BlockFamily("partial", ds.cost, ds.gate_width, {"torch": ds.parts["torch"], "onnx": "json"})
    assert partial.missing_parts() == ["onnx.block", "onnx.pre_gate", "onnx.post_gate", "onnx.gate_head", "masked_onnx",
                                       "masked_torch"]
    with pytest.raises(SpecError, match="no 'masked_onnx' part"):
        partial.part("masked_onnx")


def test_registry_refuses_duplicates_and_unknown_names():
    with pytest.raises(SpecError, match="registered twice"):
        register_family(block_family("ds"))
    with pytest.raises(SpecError, match="unknown block type 'nope'"):
        block_family("nope")
    with pytest.raises(SpecError, match="unknown block type 'nope'"):
        _spec_with_block("nope")


def _spec_with_block(block: str):
    base = get_arch("ds_mbnet_tiny")
    return dataclasses.replace(base, stages=(dataclasses.replace(base.stages[0], block=block), *base.stages[1:]))


def test_onnx_engines_equal_the_torch_module(family_model):
    """Gate engine + route engine (ONNX emitter) == supernet forward == dense twin, on every route."""
    spec, x = family_model.spec, structured_inputs(6)
    arrays = state_arrays(family_model)
    for index in range(spec.num_routes):
        gate_logits, logits = run_engines(arrays, spec, resolve_route(spec, index), HW, x)
        with torch.no_grad():
            expected = family_model(torch.from_numpy(x), index).numpy()
            dense = family_model.extract(index)(torch.from_numpy(x)).numpy()
            expected_gate = family_model.gate_logits(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-5)
        np.testing.assert_allclose(dense, expected, atol=1e-4, rtol=1e-5)
        np.testing.assert_allclose(gate_logits, expected_gate, atol=1e-4, rtol=1e-5)


def _covering_bias(gate: np.ndarray) -> np.ndarray:
    """A gate bias under which every route wins for some samples: centred, then nudged towards the routes that
    win least (a random gate can favour a few routes whatever the centring)."""
    bias = -gate.mean(0)
    step = 0.02 * float(gate.std())
    for _ in range(2000):
        counts = np.bincount(np.argmax(gate + bias, axis=1), minlength=gate.shape[1])
        if (counts >= 2).all():
            break
        bias += step * (counts.mean() - counts) / counts.mean()
    return bias.astype(np.float32)


def test_masked_forms_equal_each_samples_route(family_model):
    """Both masked forms (torch, ONNX) give every sample its own route's logits, on a batch using every route."""
    spec, x = family_model.spec, structured_inputs(64)
    with torch.no_grad():
        gate = family_model.gate_logits(torch.from_numpy(x)).numpy()
    bias = _covering_bias(gate)
    routes = np.argmax(gate + bias, axis=1)
    assert len(set(routes.tolist())) == spec.num_routes
    with torch.no_grad():
        expected = np.concatenate([family_model(torch.from_numpy(x[i:i + 1]), int(r)).numpy()
                                   for i, r in enumerate(routes)])
    masked_torch = TorchMasking(family_model)(torch.from_numpy(x), torch.from_numpy(bias))
    np.testing.assert_allclose(masked_torch.logits.numpy(), expected, atol=1e-4, rtol=1e-5)
    (masked_onnx,) = _session(emit_masked(spec, state_arrays(family_model), HW)).run(
        ["logits"], {"image": x, GATE_BIAS: bias})
    np.testing.assert_allclose(masked_onnx, expected, atol=1e-4, rtol=1e-5)


def test_cost_counts_what_the_dense_module_stores(family_model):
    """A route's parameters and buffers from the family's cost == the tensors of its dense torch twin."""
    spec = family_model.spec
    for route in [*range(spec.num_routes), "largest"]:
        dense = family_model.extract(route)
        params = sum(p.numel() for p in dense.parameters())
        buffers = sum(b.numel() for name, b in dense.named_buffers() if not name.endswith("num_batches_tracked"))
        cost = route_cost(spec, route, HW)
        assert (cost.params, cost.buffers) == (params, buffers), route


def test_every_block_is_one_module_at_its_state_dict_prefix(family_model):
    sites = list(iter_blocks(family_model.spec))
    assert len(sites) == sum(s.layers for s in family_model.spec.stages)
    for site in sites:
        module = family_model.block(site)
        assert isinstance(module, block_family(site.stage.block).part("torch"))
    assert sum(site.gated for site in sites) == 1


def test_the_activation_is_the_specs_in_every_engine(family_model):
    """The stem and every block use the spec's activation: Relu nodes for relu, Sigmoid-gated Mul for swish."""
    spec = family_model.spec
    proto = emit_engine(Graph("gate.onnx", EmbeddedBinding(state_arrays(family_model))), spec,
                        resolve_route(spec, 0), "gate", HW, 17)
    ops = {n.name: n.op_type for n in proto.graph.node}
    assert ops["stem/act"] == ("Relu" if spec.activation == "relu" else "Mul")
    activations = [op for name, op in ops.items() if name.endswith(("/act1", "/act2"))]
    assert activations and set(activations) == {"Relu" if spec.activation == "relu" else "Mul"}


def test_official_shortcut_pools_with_ceil_mode_on_odd_sizes():
    """The ds shortcut's cases on odd maps (36 px -> 18 -> 9 -> 5): pool + projection, pool alone (stride 2, same
    widest width), projection alone and identity, in torch, its dense twin, the engines and both masked forms."""
    from dsnet_export.arch import ArchSpec, GateSpec, InputSpec, StageSpec, StemSpec

    spec = ArchSpec(
        name="odd_residual", stem=StemSpec(channels=(8, 12), stride=2),
        stages=(StageSpec(channels=(16, 24), layers=2, stride=1, residual=True),        # projection, identity
                StageSpec(channels=(16, 24), layers=1, stride=2, residual=True),        # pool alone
                StageSpec(channels=(24, 32), layers=1, stride=2, residual=True),        # pool + projection
                StageSpec(channels=(32, 40, 48, 56), layers=2, stride=2),               # gated: no shortcut
                StageSpec(channels=(48, 56, 64, 72), layers=1, stride=1, residual=True)),
        gate=GateSpec(stage=3, routes=(0, 1, 2, 3)), num_classes=10,
        input=InputSpec(height=36, width=36, mean=(0.5,) * 3, std=(0.25,) * 3))
    torch.manual_seed(0)
    model = randomise(Supernet(spec))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bn2.aux_bn.1.weight") or name.endswith("bn2.aux_bn.3.weight"):
                p.copy_(torch.rand(p.shape) + 0.5)  # undo the zero init so the body shows
    assert [type(m).__name__ for m in model.blocks[1].first_block.downsample] == ["AvgPool2d"]
    x = structured_inputs(32, size=36)
    arrays = state_arrays(model)
    with torch.no_grad():
        gate = model.gate_logits(torch.from_numpy(x)).numpy()
    bias = _covering_bias(gate)
    chosen = np.argmax(gate + bias, axis=1)
    own = np.zeros((len(x), 10), np.float32)
    for index in range(spec.num_routes):
        route = resolve_route(spec, index)
        engine = _session(emit_engine(Graph("full", EmbeddedBinding(arrays)), spec, route, "full", (36, 36), 17))
        (logits,) = engine.run(["logits"], {"image": x})
        with torch.no_grad():
            expected = model(torch.from_numpy(x), index).numpy()
            dense = model.extract(index)(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-5)
        np.testing.assert_allclose(dense, expected, atol=1e-4, rtol=1e-5)
        own[chosen == index] = expected[chosen == index]
    masked = TorchMasking(model)(torch.from_numpy(x), torch.from_numpy(bias))
    np.testing.assert_allclose(masked.logits.numpy(), own, atol=1e-4, rtol=1e-5)
    (masked_onnx,) = _session(emit_masked(spec, arrays, (36, 36))).run(["logits"], {"image": x, GATE_BIAS: bias})
    np.testing.assert_allclose(masked_onnx, own, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(("change", "message"), [
    ({"stages": {2: {"residual": True}}}, "the gated stage cannot be residual"),
    ({"stages": {0: {"block": "bottleneck", "channels": (16, 22)}}}, "multiples of 4"),
    ({"stages": {0: {"block": "basic", "residual": True}}}, "'residual' is the ds family's option"),
    ({"stages": {1: {"block": "basic", "stride": 1, "channels": (20, 24)}}}, "same width choices"),
])
def test_family_rules_are_spec_errors(change, message):
    base = get_arch("ds_mbnet_tiny")
    stages = list(base.stages)
    for i, fields in change["stages"].items():
        stages[i] = dataclasses.replace(stages[i], **fields)
    with pytest.raises(SpecError, match=message):
        dataclasses.replace(base, stages=tuple(stages))


def test_cost_counts_the_madds_the_engines_run(family_model):
    """A route's MAdds from the family's cost == a count of the ONNX nodes (gate engine's features + route engine),
    and the gate's own MAdds == what the gate engine adds for its logits."""
    from dsnet_export.arch import gate_head_macs
    from tests.conftest import onnx_macs

    spec = family_model.spec
    arrays = state_arrays(family_model)
    for index in range(spec.num_routes):
        gate, body = engines(arrays, spec, resolve_route(spec, index), HW)
        assert route_cost(spec, index, HW).macs == onnx_macs(gate, ["features"]) + onnx_macs(body, ["logits"])
    assert gate_head_macs(spec, HW) == onnx_macs(gate, ["features", "gate_logits"]) - onnx_macs(gate, ["features"])
