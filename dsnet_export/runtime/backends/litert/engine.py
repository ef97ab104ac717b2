"""One LiteRT (.tflite) engine: the ``ai_edge_litert`` interpreter (XNNPACK applied by default), its batch resized
only when it changes.  An interpreter is not thread-safe: the backend keeps one per thread."""

from __future__ import annotations

import numpy as np

from ....optional import require


class LiteRtEngine:
    def __init__(self, model: bytes, threads: int = 1):
        interpreter = require("ai_edge_litert.interpreter", "the litert backend").Interpreter
        self._it = it = interpreter(model_content=model, num_threads=threads)
        (inp,) = it.get_input_details()
        self._input = inp["index"]
        outputs = it.get_signature_runner().get_output_details()  # output_0, output_1, ...: the module's order
        self._outputs = [outputs[f"output_{i}"]["index"] for i in range(len(outputs))]
        self._batch: int | None = None

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if x.shape[0] != self._batch:
            # strict: only the dynamic batch dimension may change (a wrong image size is refused, not run)
            self._it.resize_tensor_input(self._input, list(x.shape), strict=True)
            self._it.allocate_tensors()
            self._batch = x.shape[0]
        self._it.set_tensor(self._input, np.ascontiguousarray(x, dtype=np.float32))
        self._it.invoke()
        return [self._it.get_tensor(i) for i in self._outputs]  # copies: the caller's to keep
