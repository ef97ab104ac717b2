"""Video and image I/O for apps: sources and sinks named by URI, and frame overlays (needs OpenCV)."""

from .overlay import draw_overlay
from .sinks import open_sink
from .sources import Frame, open_source

__all__ = ["Frame", "draw_overlay", "open_sink", "open_source"]
