#!/usr/bin/env python3
"""Embed the ONNX Runtime dispatcher: classify .npy batches or images, printing routes and MAdds.

  python example.py BUNDLE INPUT...     (INPUT: images, folders of images, .npy or .npz)
"""

import sys

import numpy as np

from dsnet_export.runtime import Dispatcher
from dsnet_export.runtime.inputs import iter_inputs


def main(bundle: str, inputs: list[str]) -> None:
    # Load once: the gate and every route engine, all reading one shared copy of the weights.
    with Dispatcher.load(bundle) as dispatcher:
        for item in iter_inputs(inputs, dispatcher.manifest.input):
            # One call routes every sample through its own dense subnet.
            result = dispatcher(item.array)
            for i, (logits, route, macs) in enumerate(zip(result.logits, result.routes, result.macs)):
                name = dispatcher.routes[route].name
                print(f"{item.name}[{i}]: class {int(np.argmax(logits))}, route {name}, {macs / 1e6:.1f}M MAdds")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
