"""The runtime side: bundle loading, ONNX Runtime dispatcher, compute budget (numpy + onnxruntime, never torch)."""

from .budget import Budget, calibrate, load_budget, save_budget
from .bundle import Bundle, load_bundle
from .dispatcher import Dispatcher, DispatchResult, Policy
from .manifest import Manifest, RouteInfo, parse_manifest

__all__ = ["Budget", "Bundle", "DispatchResult", "Dispatcher", "Manifest", "Policy", "RouteInfo", "calibrate",
           "load_budget", "load_bundle", "parse_manifest", "save_budget"]
