"""Static check that an ONNX file only uses what TensorRT 10.3's ONNX parser supports.

Source: onnx-tensorrt's operator support matrix (docs/operators.md, release 10.x): TensorRT 10
parses opsets 9 to 20.  Only the operators dsnet-export emits are listed, with the restrictions
that matter for them; anything else is reported, so a new block type cannot slip in an operator
the oldest supported TensorRT (JetPack 6) rejects.  On the device, ``build --trt`` is the real test.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

OPSETS = range(9, 21)
#: operator -> restriction checked below (None: none that applies to our graphs).
SUPPORTED = {
    "Add": None,
    "AveragePool": "2D pooling",
    "Conv": "2D convolution with the weight an initializer",
    "BatchNormalization": None,
    "Cast": None,
    "Flatten": None,
    "Gather": None,
    "Gemm": None,
    "GlobalAveragePool": None,
    "Identity": None,
    "MaxPool": "2D pooling, no Indices output",
    "Mul": None,
    "Relu": None,
    "Sigmoid": None,
    "Slice": "starts, ends and axes initializers",
}


@dataclass(frozen=True)
class Problem:
    where: str
    message: str


def check_model(model: onnx.ModelProto, name: str = "model") -> list[Problem]:
    """Every unsupported operator, restriction, opset or non-static dimension, as a list."""
    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset not in OPSETS:
        problems.append(Problem(name, f"opset {opset} is outside TensorRT 10's {OPSETS.start}..{OPSETS.stop - 1}"))
    initializers = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        where = f"{name}: {node.name or node.op_type}"
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED:
            problems.append(Problem(where, f"operator {node.domain or 'ai.onnx'}:{node.op_type} is not in the list "
                                           f"checked against TensorRT 10.3"))
            continue
        if node.op_type == "Conv":
            kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), None)
            if kernel is None or len(kernel) != 2:
                problems.append(Problem(where, "only 2D convolutions are used with TensorRT here"))
            if node.input[1] not in initializers and not _sliced_initializer(model, node.input[1], initializers):
                problems.append(Problem(where, "Conv weight must be an initializer"))
        if node.op_type in ("MaxPool", "AveragePool"):
            kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), None)
            if kernel is None or len(kernel) != 2 or len(node.output) != 1:
                problems.append(Problem(where, "only 2D pooling with one output is used with TensorRT here"))
        if node.op_type == "Slice" and not all(i in initializers for i in node.input[1:4]):
            problems.append(Problem(where, "Slice starts/ends/axes must be initializers"))
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if not dims or not dims[0].dim_param:
            problems.append(Problem(f"{name}: {value.name}", "the batch dimension must be dynamic"))
        if any(not d.dim_value for d in dims[1:]):
            problems.append(Problem(f"{name}: {value.name}", "every dimension but the batch must be static"))
    return problems


def _sliced_initializer(model: onnx.ModelProto, value: str, initializers) -> bool:
    """True when ``value`` is a Slice of an initializer (the bundle's prefix slices)."""
    producer = next((n for n in model.graph.node if value in n.output), None)
    return producer is not None and producer.op_type == "Slice" and producer.input[0] in initializers
