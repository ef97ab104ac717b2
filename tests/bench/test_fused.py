"""The fused engine (gate + routes behind If nodes), the one-session design the bench measures."""

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from dsnet_export.bench.fused import FusedEngine, fused_model
from dsnet_export.runtime import Dispatcher, load_bundle
from dsnet_export.runtime.backends.ort.sessions import SessionFactory


@pytest.fixture(scope="module")
def fused(tiny_bundle):
    bundle = load_bundle(tiny_bundle.path)
    factory = SessionFactory(bundle, ["CPUExecutionProvider"])
    yield FusedEngine(factory.from_model(fused_model(bundle), "fused"), bundle), factory
    factory.close()


def test_fused_engine_equals_the_dispatcher_on_every_route(fused, tiny_bundle, mixed_batch):
    engine, factory = fused
    assert factory.shared  # the initializers came from the one mapped weights file
    x = mixed_batch[0]
    with Dispatcher.load(tiny_bundle.path) as d:
        for route in (r for r in d.routes if r.kind != "fixed"):
            for n in (1, 5):
                np.testing.assert_allclose(engine(x[:n], route.index), d.run(x[:n], route=route.index).logits,
                                           atol=1e-6)
        for i in range(8):  # batch 1, the gate deciding
            np.testing.assert_allclose(engine(x[i:i + 1]), d(x[i:i + 1]).logits, atol=1e-6)


def test_branches_are_optimized_like_standalone_routes(tiny_bundle, tmp_path):
    """Read through a Reshape, every branch folds to the op mix of its own route engine (no Conv left in
    the slow layout because its weight lived in the outer scope)."""
    bundle = load_bundle(tiny_bundle.path)
    factory = SessionFactory(bundle, ["CPUExecutionProvider"])

    def optimized(model, name):
        options = factory.options()
        options.optimized_model_filepath = str(tmp_path / f"{name}.onnx")
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(bundle.root))
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return onnx.load(str(tmp_path / f"{name}.onnx"), load_external_data=False)

    def ops(graph):
        return collections.Counter((n.domain, n.op_type) for n in graph.node)

    branches = {}

    def walk(graph):
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    if attr.g.name.startswith("route_"):
                        branches[attr.g.name] = attr.g
                    walk(attr.g)

    walk(optimized(fused_model(bundle), "fused").graph)
    routes = [r for r in bundle.manifest.routes if r.kind != "fixed"]
    assert sorted(branches) == sorted(f"route_{r.index}" for r in routes)
    for r in routes:
        alone = optimized(onnx.load(str(bundle.path(r.file)), load_external_data=False), r.file)
        assert ops(branches[f"route_{r.index}"]) == ops(alone.graph), r.name
    factory.close()
