"""The runtime side: bundle loading, ONNX Runtime dispatcher, compute budget (numpy + onnxruntime, never torch)."""

from .budget import Budget, OnlineBudget, calibrate, load_budget, save_budget
from .bundle import Bundle, load_bundle
from .dispatcher import Dispatcher, DispatchResult, Policy
from .labels import load_labels
from .manifest import Manifest, RouteInfo, parse_manifest
from .stats import RunStats

__all__ = ["Budget", "Bundle", "DispatchResult", "Dispatcher", "Manifest", "OnlineBudget", "Policy", "RouteInfo",
           "RunStats", "calibrate", "load_budget", "load_bundle", "load_labels", "parse_manifest", "save_budget"]
