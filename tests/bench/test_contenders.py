"""The monolithic and naive-deployment models built from a bundle compute what the dispatcher computes."""

import numpy as np
import onnx
import pytest

from dsnet_export.bench.contenders import (
    BundleContext,
    Monolithic,
    make_session,
    monolithic_model,
    write_naive_deployment,
)
from dsnet_export.runtime import Dispatcher, load_bundle


@pytest.fixture(scope="module")
def ctx(tiny_bundle):
    return BundleContext.open(load_bundle(tiny_bundle.path))


def test_monolithic_equals_the_forced_dispatcher_route(ctx, tiny_bundle, mixed_batch):
    x = mixed_batch[0][:5]
    with Dispatcher.load(tiny_bundle.path) as dispatcher:
        for info in ctx.bundle.manifest.routes:  # gate, forced (uniform:4) and fixed (largest) routes
            proto = monolithic_model(ctx, info)
            assert not any(i.data_location == onnx.TensorProto.EXTERNAL for i in proto.graph.initializer)
            got = Monolithic(make_session(proto, threads=1))(x)
            np.testing.assert_allclose(got, dispatcher.run(x, route=info.index).logits, atol=1e-5, rtol=0)


def test_naive_deployment_has_one_standalone_file_per_route(ctx, tmp_path):
    paths = write_naive_deployment(ctx, tmp_path / "naive")
    assert [p.name for p in paths] == [f"route_{r.index}.onnx" for r in ctx.bundle.manifest.routes]
    for path in paths:
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert "conv_stem.weight" in {i.name for i in model.graph.initializer}  # its own pre-gate copy


def test_bundle_context_reads_the_engines_opset(ctx):
    assert ctx.opset == 17
    assert ctx.input_hw == (32, 32)
