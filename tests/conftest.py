"""Shared fixtures: the official-code oracle in ../shared/oracle and small models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def oracle_dir() -> Path:
    """DSNET_ORACLE_DIR, or ../shared/oracle relative to the project root."""
    return Path(os.environ.get("DSNET_ORACLE_DIR", ROOT.parent / "shared" / "oracle"))


@pytest.fixture(scope="session")
def oracle() -> Path:
    """The oracle folder; missing data skips locally and fails when CI is set."""
    path = oracle_dir()
    needed = ["dsmbnet_oracle.pth.tar", "oracle_inputs.npz", "reference_logits.npz"]
    missing = [n for n in needed if not (path / n).is_file()]
    if missing:
        message = f"oracle data missing in {path}: {', '.join(missing)} (set DSNET_ORACLE_DIR)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def randomise(model, seed: int = 0):
    """Non-trivial biases and per-width BN statistics, so a wrong slice or width shows in the logits."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn(buf.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model():
    import torch

    from dsnet_export.arch import get_arch
    from dsnet_export.model import Supernet

    torch.manual_seed(0)
    return randomise(Supernet(get_arch("ds_mbnet_tiny")))


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory):
    from dsnet_export import save_supernet

    return save_supernet(tiny_model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="session")
def tiny_bundle(tiny_model, tmp_path_factory):
    """Gate routes 0..3, a forced uniform:4 and a fixed largest, with standalone copies."""
    from dsnet_export.export import build_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    return build_bundle(model=tiny_model, out=out, routes=[0, 1, 2, 3, "uniform:4", "largest"], standalone=True,
                        progress=False, name="tiny")


@pytest.fixture(scope="session")
def oracle_model(oracle):
    from dsnet_export import load_supernet

    return load_supernet(oracle / "dsmbnet_oracle.pth.tar")


@pytest.fixture(scope="session")
def oracle_bundle(oracle, tmp_path_factory):
    from dsnet_export.export import build_bundle

    return build_bundle(oracle / "dsmbnet_oracle.pth.tar", tmp_path_factory.mktemp("bundles") / "oracle",
                        progress=False)


def structured_inputs(n: int, seed: int = 1, size: int = 32):
    """Images with per-sample contrast, smoothness and noise, so gate logits differ between samples."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, 3, 4, 4, generator=g) * torch.linspace(0.2, 4, n).view(-1, 1, 1, 1)
    smooth = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    x = smooth + torch.randn(n, 3, size, size, generator=g) * torch.rand(n, 1, 1, 1, generator=g) * 2
    return x.numpy().astype("float32")


#: Operators that cost nothing under the official MAdds rule (activations, BatchNorm, reshapes, slicing).
FREE_OPS = {"BatchNormalization", "Sigmoid", "Mul", "Relu", "Flatten", "Slice", "Identity", "MaxPool", "Add"}


def _nodes_behind(path, outputs):
    """(tensor shapes at batch 1, every node that ``outputs`` depend on) of the ONNX file ``path`` (or model),
    shapes from ONNX's own shape inference."""
    import onnx

    model = path if isinstance(path, onnx.ModelProto) else onnx.load(str(path), load_external_data=False)
    graph = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if info.type.tensor_type.HasField("shape"):  # a tensor without one raises a KeyError when used
            dims = info.type.tensor_type.shape.dim
            assert all(d.HasField("dim_value") for d in dims[1:]), f"{path}: {info.name} has an unknown shape"
            shapes[info.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]  # batch 1
    producer = {out: node for node in graph.node for out in node.output}
    seen, stack, nodes = set(), list(outputs), []
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(node.input)
        nodes.append(node)
    return shapes, nodes


def onnx_macs(path, outputs) -> int:
    """MAdds (batch 1) of the nodes of the ONNX file ``path`` (or model) that ``outputs`` depend on, counted from the
    graph's own tensor shapes, without the cost code: a Conv costs its weight's elements times its output's
    H*W, a Gemm its weight's elements, a GlobalAveragePool or AveragePool its input's elements; ``FREE_OPS``
    (max pooling and the residual add among them) nothing."""
    import math

    shapes, nodes = _nodes_behind(path, outputs)
    total = 0
    for node in nodes:
        if node.op_type == "Conv":
            total += math.prod(shapes[node.input[1]]) * math.prod(shapes[node.output[0]][2:])
        elif node.op_type == "Gemm":
            total += math.prod(shapes[node.input[1]])
        elif node.op_type in ("GlobalAveragePool", "AveragePool"):
            total += math.prod(shapes[node.input[0]])
        else:
            assert node.op_type in FREE_OPS, f"{path}: no MAdds rule for {node.op_type}"
    return total


def onnx_params(path, outputs) -> tuple[int, int]:
    """(parameters, BatchNorm running statistics) the nodes behind ``outputs`` read, from the graph's shapes:
    Conv weight (+bias), Gemm weight + bias, BatchNormalization scale + bias (parameters) and mean + var."""
    import math

    shapes, nodes = _nodes_behind(path, outputs)
    params = buffers = 0
    for node in nodes:
        sizes = [math.prod(shapes[name]) for name in node.input[1:]]
        if node.op_type in ("Conv", "Gemm"):
            params += sum(sizes)
        elif node.op_type == "BatchNormalization":
            params, buffers = params + sum(sizes[:2]), buffers + sum(sizes[2:])
    return params, buffers


def route_onnx_macs(bundle_dir, manifest, route) -> int:
    """MAdds of what a bundle runs for ``route``: the gate engine up to the features (without the gate's
    head) and the route's engine, or for a fixed route its engine alone; counted by ``onnx_macs``."""
    from pathlib import Path

    own = onnx_macs(Path(bundle_dir) / route.file, [route.output])
    if route.kind == "fixed":
        return own
    return onnx_macs(Path(bundle_dir) / manifest.gate.file, [manifest.gate.features]) + own


@pytest.fixture(scope="session")
def mixed_batch(tiny_model):
    """(x, bias): 32 inputs and a gate bias under which the tiny model's gate picks all four routes.

    The bias centres the gate logits (the random gate otherwise prefers one route for every input)."""
    import numpy as np
    import torch

    x = structured_inputs(32)
    with torch.no_grad():
        logits = tiny_model.gate_logits(torch.from_numpy(x)).numpy()
    bias = -logits.mean(0)
    assert np.all(np.bincount((logits + bias).argmax(1), minlength=4) >= 2)
    return x, bias.astype(np.float32)


@pytest.fixture(scope="session")
def digits():
    from dsnet_export.datasets import load_digits

    return load_digits()


@pytest.fixture(scope="session")
def small_digits(digits):
    """A few batches of each split, so training loops run in seconds (for the tiny arch)."""
    import dataclasses

    from dsnet_export.datasets import Split

    def head(split, n):
        return Split(split.images[:n], split.labels[:n], split.severity[:n])

    from dsnet_export.arch import get_arch
    from dsnet_export.imaging import Preprocessing

    # Normalised as the tiny arch (which these tests train) says.
    return dataclasses.replace(digits, train=head(digits.train, 96), val=head(digits.val, 64),
                               test=head(digits.test, 64),
                               preprocessing=Preprocessing.from_spec(get_arch("ds_mbnet_tiny").input))


@pytest.fixture(scope="session")
def run_threads():
    """``run_threads(worker, n)``: ``worker(i)`` in ``n`` threads at once; the exceptions they raised."""
    import threading

    def run(worker, n):
        errors = []

        def guarded(i):
            try:
                worker(i)
            except Exception as exc:  # noqa: BLE001 - returned to the test
                errors.append(exc)

        threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return errors

    return run
