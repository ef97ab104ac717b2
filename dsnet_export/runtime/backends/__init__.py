"""Inference backends behind the one ``Dispatcher`` API; each is imported only when chosen."""

from __future__ import annotations

from .base import Backend

BACKENDS = ("ort", "trt")

__all__ = ["BACKENDS", "Backend"]
