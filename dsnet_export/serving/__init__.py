"""Serving a bundle behind Triton Inference Server or Ray Serve (the ``serve`` extra).

The torch-free routing core shared by both engines lives here (``routing``: the gate's choice, grouping rows by
route and putting results back in input order; ``batcher``: an asyncio batcher keyed by route).  Each engine has
its own sub-package (``triton``, ``ray``), imported only when used, so the core needs neither.
"""

from .batcher import KeyedBatcher
from .routing import RouteGroup, RouteTable

__all__ = ["KeyedBatcher", "RouteGroup", "RouteTable"]
