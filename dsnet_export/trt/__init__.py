"""TensorRT: plans built on the target device from a bundle, weights stored once (torch-free)."""
