"""OpenCV, imported on first use with an install hint."""

from __future__ import annotations

from ..errors import DsnetError


def cv2():
    try:
        import cv2 as module
    except ImportError as exc:
        raise DsnetError(f"video and camera I/O needs OpenCV ({exc}): pip install 'dsnet-export[video]' "
                         f"(on a Jetson use JetPack's OpenCV, which has GStreamer for csi:// cameras)") from None
    return module
