"""ONNX layer primitives the block families and the networks are written with."""

from __future__ import annotations

from ..arch import conv_padding
from .graph import Graph


def conv(g: Graph, x: str, key: str, cin: int, cout: int, kernel: int, stride: int, *, depthwise: bool = False,
         bias_key: str | None = None, name: str) -> str:
    """A convolution on the ``[cout, cin]`` prefix of supernet tensor ``key`` (official padding)."""
    weight = g.weight(key, (cout, 1 if depthwise else cin, kernel, kernel))
    inputs = [x, weight] + ([g.weight(bias_key, (cout,))] if bias_key else [])
    return g.op("Conv", inputs, name, kernel_shape=[kernel, kernel], strides=[stride, stride],
                pads=[conv_padding(kernel, stride)] * 4, group=cin if depthwise else 1)


def batch_norm(g: Graph, x: str, prefix: str, channels: tuple[int, ...], width: int, eps: float, *, name: str) -> str:
    """Per-width statistics (``aux_bn.{i}``), shared affine (``aux_bn.{last}``) cut to ``width``."""
    i, last = channels.index(width), len(channels) - 1
    inputs = [g.weight(f"{prefix}.aux_bn.{last}.weight", (width,)), g.weight(f"{prefix}.aux_bn.{last}.bias", (width,)),
              g.weight(f"{prefix}.aux_bn.{i}.running_mean", (width,)),
              g.weight(f"{prefix}.aux_bn.{i}.running_var", (width,))]
    return g.op("BatchNormalization", [x, *inputs], name, epsilon=eps)


def swish(g: Graph, x: str, *, name: str) -> str:
    return g.op("Mul", [x, g.op("Sigmoid", [x], f"{name}/sigmoid")], name)


def activation(g: Graph, x: str, kind: str, *, name: str) -> str:
    """The spec's activation ``kind`` (``arch.spec.ACTIVATIONS``) applied to ``x``."""
    if kind == "swish":
        return swish(g, x, name=name)
    if kind == "relu":
        return g.op("Relu", [x], name)
    raise ValueError(f"no ONNX form for activation {kind!r}")


def pooled_classifier(g: Graph, x: str, num_classes: int, cin: int, output: str) -> str:
    """Global average pool, then the classifier's ``[:, :cin]`` prefix."""
    pooled = g.op("Flatten", [g.op("GlobalAveragePool", [x], "head/pool")], "head/flatten", axis=1)
    weight = g.weight("classifier.weight", (num_classes, cin))
    bias = g.weight("classifier.bias", (num_classes,))
    return g.op("Gemm", [pooled, weight, bias], output, transB=1)
