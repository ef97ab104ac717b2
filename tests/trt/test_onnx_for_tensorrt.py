"""No GPU needed: what TensorRT will be given is valid for TensorRT 10.3 and refits by name."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import randomise

from dsnet_export.arch import get_arch, list_archs
from dsnet_export.export import build_bundle
from dsnet_export.model import Supernet
from dsnet_export.runtime import Dispatcher, load_bundle
from dsnet_export.runtime.backends.trt.variant import make_variant
from dsnet_export.runtime.weights import map_weights, read_layout
from dsnet_export.trt.operators import check_model


@pytest.fixture(scope="module", params=list_archs())
def arch_bundle(request, tmp_path_factory):
    """Every registered architecture, exported with a forced and a fixed route too."""
    spec = get_arch(request.param)
    torch.manual_seed(0)
    model = randomise(Supernet(spec))
    extra = [f"uniform:{spec.num_uniform_choices - 1}", "largest"]
    routes = list(range(spec.num_routes)) + [r for r in extra if r != f"uniform:{spec.gate.routes[-1]}"]
    out = tmp_path_factory.mktemp("arch") / spec.name
    return build_bundle(model=model, out=out, routes=routes, progress=False, check=False).path


def _engines(bundle):
    m = bundle.manifest
    return [m.gate.file, *(r.file for r in m.routes)]


@pytest.mark.parametrize("fp16", [False, True])
def test_engines_and_variants_use_only_what_tensorrt_10_3_parses(arch_bundle, fp16):
    bundle = load_bundle(arch_bundle, verify=False)
    weights = map_weights(bundle.weights_path)
    problems = []
    for engine in _engines(bundle):
        if not fp16:
            problems += check_model(onnx.load(str(bundle.path(engine)), load_external_data=False), engine)
        variant = make_variant(bundle.manifest, weights, engine, fp16_graph=fp16)
        problems += check_model(onnx.load_from_string(variant.model), f"{engine} (variant)")
    assert problems == []


def test_the_check_catches_what_tensorrt_would_reject():
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("NonZero", ["x"], ["y"], name="nz")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, ["N", None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    messages = [p.message for p in check_model(model)]
    assert any("opset 21" in m for m in messages)
    assert any("NonZero" in m for m in messages)
    assert any("batch dimension must be dynamic" in m for m in messages)
    assert any("must be static" in m for m in messages)


def test_variants_compute_what_the_bundle_computes(tiny_bundle, mixed_batch):
    x = mixed_batch[0][:6]
    m = tiny_bundle.manifest
    weights = map_weights(tiny_bundle.path / m.weights)
    with Dispatcher.load(tiny_bundle.path) as d:
        features, gate_logits = ort.InferenceSession(make_variant(m, weights, "gate.onnx", fp16_graph=False).model,
                                                     providers=["CPUExecutionProvider"]).run(None, {"image": x})
        np.testing.assert_allclose(gate_logits, d.gate_logits(x), atol=1e-5)
        for route in m.routes:
            for fp16 in (False, True):
                variant = make_variant(m, weights, route.file, fp16_graph=fp16)
                session = ort.InferenceSession(variant.model, providers=["CPUExecutionProvider"])
                (logits,) = session.run(None, {variant.input: x if route.kind == "fixed" else features})
                expected = d.run(x, route=route.index).logits
                error = np.max(np.abs(logits - expected)) / np.max(np.abs(expected))
                assert error < (2e-2 if fp16 else 1e-5), (route.file, fp16, error)


def test_variants_are_deterministic_dense_and_slice_free(tiny_bundle):
    m = tiny_bundle.manifest
    weights = map_weights(tiny_bundle.path / m.weights)
    for engine in _engines(tiny_bundle):
        a = make_variant(m, weights, engine, fp16_graph=False)
        assert a.sha256 == make_variant(m, dict(weights), engine, fp16_graph=False).sha256
        ops = {n.op_type for n in onnx.load_from_string(a.model).graph.node}
        assert not ops & {"Slice", "BatchNormalization"}


def test_every_refitted_weight_comes_from_the_weights_file(tiny_bundle):
    """The refit name mapping: each weight of a variant (what a refitter asks for by name) is a prefix
    of a stored tensor, or a Conv folded with its BatchNorm from stored tensors of matching width."""
    m = tiny_bundle.manifest
    layout = read_layout(tiny_bundle.path / m.weights)
    weights = map_weights(tiny_bundle.path / m.weights)
    for engine in _engines(tiny_bundle):
        model = onnx.load_from_string(make_variant(m, weights, engine, fp16_graph=False).model)
        for t in model.graph.initializer:
            if t.name.endswith(("/folded_weight", "/folded_bias")):
                conv = t.name.rsplit("/", 1)[0]          # e.g. blocks.0.first_block/conv_dw
                key = conv.replace("/", ".") + ".weight"
                if conv == "stem/conv":
                    key = "conv_stem.weight"
                stored = layout[key].shape
                assert t.dims[0] <= stored[0], t.name
            else:
                stored = layout[t.name].shape
                assert len(t.dims) == len(stored) and all(d <= s for d, s in zip(t.dims, stored)), t.name
