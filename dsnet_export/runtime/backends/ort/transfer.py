"""Moving the gate's features into the route engines with IO binding.

``HostTransfer`` (CPU provider): the gate writes its outputs straight into numpy buffers the
dispatcher owns; a route reads the whole buffer, or the rows of its samples, without any
further conversion, and writes its logits into the caller's result buffer.

``DeviceTransfer`` (CUDA / TensorRT providers): the features stay in device memory; the rows of
each route's samples are gathered on the device by a one-node ``Gather`` session and bound
straight into the route engine; only gate logits and route logits come back to the host.
It also runs with device 'cpu', which is how the tests exercise it on machines without a GPU.
"""

from __future__ import annotations

import numpy as np


class HostTransfer:
    device = "cpu"

    def run_gate(self, session, x: np.ndarray, names: tuple[str, str, str], feature_shape: tuple[int, ...],
                 num_routes: int):
        image, features_name, logits_name = names
        features = np.empty((x.shape[0], *feature_shape), np.float32)
        gate_logits = np.empty((x.shape[0], num_routes), np.float32)
        io = session.io_binding()
        io.bind_cpu_input(image, x)
        _bind_host_output(io, features_name, features)
        _bind_host_output(io, logits_name, gate_logits)
        session.run_with_iobinding(io)
        return features, gate_logits

    def run_route(self, session, features: np.ndarray, rows: np.ndarray | None, names: tuple[str, str],
                  out: np.ndarray) -> None:
        input_name, output_name = names
        io = session.io_binding()
        io.bind_cpu_input(input_name, features if rows is None else features[rows])
        _bind_host_output(io, output_name, out)
        session.run_with_iobinding(io)


class DeviceTransfer:
    """Features kept on ``device`` ('cuda', or 'cpu' for tests) between gate and routes."""

    def __init__(self, device: str, gather_session):
        self.device, self._gather = device, gather_session

    def run_gate(self, session, x, names, feature_shape, num_routes):
        image, features_name, logits_name = names
        gate_logits = np.empty((x.shape[0], num_routes), np.float32)
        io = session.io_binding()
        io.bind_cpu_input(image, x)
        io.bind_output(features_name, self.device)
        _bind_host_output(io, logits_name, gate_logits)
        session.run_with_iobinding(io)
        return io.get_outputs()[0], gate_logits

    def run_route(self, session, features, rows, names, out):
        input_name, output_name = names
        if rows is not None:
            gather = self._gather.io_binding()
            gather.bind_ortvalue_input("features", features)
            gather.bind_cpu_input("rows", rows.astype(np.int64))
            gather.bind_output("gathered", self.device)
            self._gather.run_with_iobinding(gather)
            features = gather.get_outputs()[0]
        io = session.io_binding()
        io.bind_ortvalue_input(input_name, features)
        _bind_host_output(io, output_name, out)
        session.run_with_iobinding(io)


def _bind_host_output(io, name: str, buffer: np.ndarray) -> None:
    io.bind_output(name, "cpu", 0, np.float32, list(buffer.shape), buffer.ctypes.data)


def gather_model_bytes(opset: int = 17) -> bytes:
    """A one-node model: gathered = features[rows] along the batch axis."""
    from onnx import TensorProto, helper

    node = helper.make_node("Gather", ["features", "rows"], ["gathered"], axis=0)
    graph = helper.make_graph(
        [node], "gather_rows",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("rows", TensorProto.INT64, ["M"])],
        [helper.make_tensor_value_info("gathered", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="dsnet-export")
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    return model.SerializeToString()
