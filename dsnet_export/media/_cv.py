"""OpenCV, imported on first use with an install hint."""

from __future__ import annotations

from ..optional import require


def cv2():
    """(On a Jetson use JetPack's OpenCV, which has GStreamer for csi:// cameras.)"""
    return require("cv2", "video and camera I/O")
