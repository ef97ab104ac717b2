"""Export on the tiny preset: engines vs the torch supernet, weights stored once, graphs that fold."""

import collections
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import onnx_macs, route_onnx_macs

from dsnet_export import DsnetError
from dsnet_export.export import build_bundle, select_routes
from dsnet_export.runtime import load_bundle
from dsnet_export.runtime.weights import read_layout


def _session(path, **config):
    options = ort.SessionOptions()
    for key, value in config.items():
        setattr(options, key, value)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run_route(bundle_dir, manifest, route, x):
    if route.kind == "fixed":
        return _session(bundle_dir / route.file).run(["logits"], {"image": x})[0]
    features, _ = _session(bundle_dir / "gate.onnx").run(["features", "gate_logits"], {"image": x})
    return _session(bundle_dir / route.file).run(["logits"], {"features": features})[0]


def _torch_route(route):
    return route.gate_index if route.kind == "gate" else route.name


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_every_route_matches_the_supernet(tiny_bundle, tiny_model, batch):
    m = tiny_bundle.manifest
    x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    assert [r.kind for r in m.routes] == ["gate"] * 4 + ["forced", "fixed"]
    with torch.no_grad():
        for route in m.routes:
            expected = tiny_model(torch.from_numpy(x), _torch_route(route)).numpy()
            np.testing.assert_allclose(_run_route(tiny_bundle.path, m, route, x), expected, atol=1e-5, rtol=0)
        gate_logits = _session(tiny_bundle.path / "gate.onnx").run(["gate_logits"], {"image": x})[0]
        np.testing.assert_allclose(gate_logits, tiny_model.gate_logits(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_every_onnx_passes_the_full_checker_and_keeps_weights_external(tiny_bundle):
    files = [tiny_bundle.manifest.gate.file, *(r.file for r in tiny_bundle.manifest.routes)]
    for name in files:
        onnx.checker.check_model(str(tiny_bundle.path / name), full_check=True)
        model = onnx.load(str(tiny_bundle.path / name), load_external_data=False)
        external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        embedded = [t for t in model.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
        assert external, name
        # Only slice bounds are embedded: small int64 vectors.
        assert all(t.data_type == onnx.TensorProto.INT64 and len(t.dims) == 1 for t in embedded), name


def test_weights_are_stored_once_at_the_widest_needed_prefix(tiny_bundle, tiny_model):
    layout = read_layout(tiny_bundle.path / "weights.safetensors")
    state = tiny_model.state_dict()
    spec = tiny_model.spec
    # Routes include largest, so the stem is stored at its widest; the gated stage at uniform:4 = its widest too.
    assert layout["conv_stem.weight"].shape == tuple(state["conv_stem.weight"].shape)
    # Every stored tensor is used by some engine and is a prefix of the supernet tensor.
    used = set()
    for name in [tiny_bundle.manifest.gate.file, *(r.file for r in tiny_bundle.manifest.routes)]:
        used |= {t.name for t in onnx.load(str(tiny_bundle.path / name), load_external_data=False).graph.initializer}
    assert set(layout) <= used
    offsets = sorted((e.offset, e.offset + e.length) for e in layout.values())
    assert all(a[1] <= b[0] for a, b in zip(offsets, offsets[1:])), "tensors overlap"
    assert "blocks.0.first_block.bn1.aux_bn.0.running_mean" in layout  # the gate's width
    assert spec.gate.stage == 2 and "blocks.2.first_block.bn2.aux_bn.4.running_mean" in layout  # forced uniform:4


def test_bundle_without_largest_cuts_the_early_stages(tiny_model, tmp_path):
    report = build_bundle(model=tiny_model, out=tmp_path / "b", progress=False)
    layout = read_layout(report.path / "weights.safetensors")
    assert layout["conv_stem.weight"].shape == (8, 3, 3, 3)            # smallest stem width only
    assert layout["blocks.2.first_block.conv_pw.weight"].shape == (56, 24, 1, 1)  # widest gate route 3
    assert "blocks.2.first_block.bn2.aux_bn.4.running_mean" not in layout
    assert "bn1.aux_bn.1.running_mean" not in layout


@pytest.mark.parametrize("level", ["ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED"])
def test_optimized_route_graphs_have_no_slice_and_no_batchnorm(tiny_bundle, tmp_path, level):
    for route in tiny_bundle.manifest.routes:
        out = tmp_path / f"opt_{route.file}"
        _session(tiny_bundle.path / route.file, optimized_model_filepath=str(out),
                 graph_optimization_level=getattr(ort.GraphOptimizationLevel, level))
        ops = collections.Counter(n.op_type for n in onnx.load(str(out), load_external_data=False).graph.node)
        assert ops["Slice"] == 0 and ops["BatchNormalization"] == 0, (route.file, ops)
        before = collections.Counter(n.op_type for n in onnx.load(str(tiny_bundle.path / route.file),
                                                                   load_external_data=False).graph.node)
        assert before["BatchNormalization"] > 0


def test_standalone_files_are_self_contained(tiny_bundle, tiny_model, tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    for route in tiny_bundle.manifest.routes:
        copy = tmp_path / f"alone_{route.index}.onnx"
        copy.write_bytes((tiny_bundle.path / "standalone" / f"route_{route.index}.onnx").read_bytes())
        model = onnx.load(str(copy))
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
        assert not any(n.op_type == "Slice" for n in model.graph.node)
        logits = _session(copy).run(["logits"], {"image": x})[0]
        with torch.no_grad():
            expected = tiny_model(torch.from_numpy(x), _torch_route(route)).numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=0)


def test_other_input_size(tiny_model, tmp_path):
    with pytest.warns(UserWarning, match="trained at"):
        report = build_bundle(model=tiny_model, out=tmp_path / "b", input_size=(48, 40), progress=False)
    m = report.manifest
    assert m.input.shape == [3, 48, 40] and m.gate.features_shape == [24, 6, 5]
    x = np.random.default_rng(0).standard_normal((2, 3, 48, 40)).astype(np.float32)
    with torch.no_grad():
        for route in m.routes:
            expected = tiny_model(torch.from_numpy(x), route.gate_index).numpy()
            np.testing.assert_allclose(_run_route(report.path, m, route, x), expected, atol=1e-5, rtol=0)
    # MAdds at the build's own input size, as the engines' graphs count them (not 32x32's).
    assert [r.macs for r in m.routes] == [route_onnx_macs(report.path, m, r) for r in m.routes]
    assert m.gate.macs == onnx_macs(report.path / m.gate.file, [m.gate.features, m.gate.logits])
    assert m.routes[0].macs > 1.8 * tiny_model.cost(0).macs


def test_manifest_describes_the_bundle(tiny_bundle, tiny_model):
    m = tiny_bundle.manifest
    assert m.schema_version == 1 and m.tool == "dsnet-export"
    assert m.gate.routes == [0, 1, 2, 3]
    assert [r.widths for r in m.routes][-1] == list(tiny_model.route("largest").widths(tiny_model.spec))
    # MAdds as counted from the engines' own graphs (Conv/Gemm weight shapes x output sizes, pools), not by the
    # cost code that wrote them: the gate's pre-gate part plus the route engine, the gate head only in the gate's.
    counted = [route_onnx_macs(tiny_bundle.path, m, r) for r in m.routes]
    assert [r.macs for r in m.routes] == counted
    assert counted == sorted(counted) and len(set(counted)) == len(counted)  # uniform:0 < ... < uniform:4 < largest
    assert m.gate.macs == onnx_macs(tiny_bundle.path / m.gate.file, [m.gate.features, m.gate.logits])
    assert m.gate.macs > onnx_macs(tiny_bundle.path / m.gate.file, [m.gate.features])  # the head is counted here
    on_disk = json.loads((tiny_bundle.path / "manifest.json").read_text())
    assert on_disk == m.to_dict()
    assert load_bundle(tiny_bundle.path).manifest == m


def test_route_selection_rules(tiny_model):
    spec = tiny_model.spec
    assert [r.name for r in select_routes(spec, None)] == ["uniform:0", "uniform:1", "uniform:2", "uniform:3"]
    assert [r.name for r in select_routes(spec, [0, 1, 2, 3, "smallest", "uniform:4"])][-1] == "uniform:4"
    with pytest.raises(DsnetError, match="missing: uniform:3"):
        select_routes(spec, [0, 1, 2])
    with pytest.raises(DsnetError, match="opset"):
        build_bundle(model=tiny_model, out="unused", opset=5, progress=False)
