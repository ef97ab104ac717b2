"""The input check moved into the gate engine: one extra output saying whether the image is finite.

A NaN or infinite input gives non-finite logits and an arbitrary route, so the dispatcher
rejects it.  Checked in numpy, that is a separate pass over the input between the Python call
and the engines (about 25 us per call in place at 32x32 on a 2-core x86, most of it the cold
caches a numpy call meets between two engine runs).  Inside the gate engine it is two more
operators on data that is already in cache: ``x - x`` is 0 for every finite value and NaN
otherwise, its sum is 0 or NaN, and ``Equal(sum, sum)`` is false only for NaN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

FINITE_OUTPUT = "dsnet_export/input_finite"


def add_finite_output(model: onnx.ModelProto, input_name: str) -> onnx.ModelProto:
    """``model`` plus a bool output ``FINITE_OUTPUT`` of shape [] (the model is changed in place)."""
    from onnx import TensorProto, helper  # here: importing the backend's modules stays light (session options)

    taken = {o for node in model.graph.node for o in node.output} | {i.name for i in model.graph.input}
    if FINITE_OUTPUT in taken or input_name not in {i.name for i in model.graph.input}:
        raise ValueError(f"cannot add the finite check to this graph (input {input_name!r})")  # a bug
    diff, total = f"{FINITE_OUTPUT}/diff", f"{FINITE_OUTPUT}/sum"
    model.graph.node.extend([
        helper.make_node("Sub", [input_name, input_name], [diff], name=diff),
        helper.make_node("ReduceSum", [diff], [total], name=total, keepdims=0),
        helper.make_node("Equal", [total, total], [FINITE_OUTPUT], name=FINITE_OUTPUT),
    ])
    model.graph.output.append(helper.make_tensor_value_info(FINITE_OUTPUT, TensorProto.BOOL, []))
    return model
