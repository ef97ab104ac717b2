"""The runtime side: bundle loading and verification (numpy + onnx + onnxruntime, never torch)."""

from .bundle import Bundle, load_bundle
from .manifest import Manifest, RouteInfo, parse_manifest

__all__ = ["Bundle", "Manifest", "RouteInfo", "load_bundle", "parse_manifest"]
