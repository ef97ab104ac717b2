"""TensorRT backend: the plans ``build --trt`` made for this device, refitted from the shared weights.

What loading and running plans needs lives here, below ``dsnet_export.trt`` (which builds them and imports
it): the version differences (``compat``), the CUDA runtime calls (``cuda``), this device and its tag
(``device``) and the variant ONNX a stripped plan is refitted from (``variant``).  Nothing here imports
``tensorrt`` or the CUDA bindings until a backend is constructed.
"""

from .backend import TrtBackend
from .options import TrtOptions

__all__ = ["TrtBackend", "TrtOptions"]
