"""TensorRT, the build side: plans built on the target device from a bundle, weights stored once (torch-free).

``plans`` builds and records them (``build --trt``), ``profiles`` holds their batch ranges and ``operators``
checks that an ONNX graph uses only what TensorRT's parser takes.  Loading and running plans is the runtime's
TensorRT backend (``dsnet_export.runtime.backends.trt``), which this package imports, never the reverse.
"""
