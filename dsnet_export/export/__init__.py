"""Export: supernet -> gate + per-route ONNX engines sharing one weights file (needs torch)."""

from .build import BuildReport, SizeReport, build_bundle, select_routes

__all__ = ["BuildReport", "SizeReport", "build_bundle", "select_routes"]
