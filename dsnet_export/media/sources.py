"""Frame sources named by URI, as jetson-inference names them.

* ``csi://0``                 a Jetson MIPI CSI camera, through a GStreamer ``nvarguscamerasrc`` pipeline
* ``v4l2://0``, ``/dev/video0`` a V4L2 (USB) camera
* ``rtsp://...``, ``http://...`` a network stream
* ``file.mp4`` (any video OpenCV reads), ``image.jpg``, ``folder/`` of images (sorted)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DsnetError
from ..runtime.inputs import IMAGE_SUFFIXES
from ._cv import cv2

CSI_PIPELINE = ("nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
                "framerate={fps}/1 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR "
                "! appsink drop=true max-buffers=1")


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # H x W x 3, uint8, BGR (OpenCV's order)
    name: str          # file name, or "<uri>#<index>" for streams
    index: int


class FrameSource:
    """Iterate frames; use as a context manager so cameras and files are released."""

    def __init__(self, uri: str, frames: Iterator[Frame], fps: float, release=None):
        self.uri, self._frames, self.fps, self._release = uri, frames, fps, release

    def __iter__(self) -> Iterator[Frame]:
        return self._frames

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        if self._release is not None:
            self._release()


def open_source(uri: str, *, width: int = 1280, height: int = 720, fps: int = 30) -> FrameSource:
    """Open ``uri``; ``width``/``height``/``fps`` only configure CSI cameras."""
    cv = cv2()
    if uri.startswith("csi://"):
        pipeline = CSI_PIPELINE.format(sensor=int(uri[len("csi://"):] or 0), width=width, height=height, fps=fps)
        return _capture(uri, cv.VideoCapture(pipeline, cv.CAP_GSTREAMER))
    match = re.fullmatch(r"(?:v4l2://|/dev/video)(\d+)", uri)
    if match:
        return _capture(uri, cv.VideoCapture(int(match.group(1)), cv.CAP_V4L2))
    if re.match(r"^(rtsp|rtmp|http|https)://", uri):
        return _capture(uri, cv.VideoCapture(uri))
    path = Path(uri.removeprefix("file://"))
    if path.is_dir():
        images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise DsnetError(f"{path}: no images found")
        return FrameSource(uri, (Frame(_read_image(p), p.name, i) for i, p in enumerate(images)), 0.0)
    if not path.is_file():
        raise DsnetError(f"{uri}: no such file, folder, camera or stream")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return FrameSource(uri, iter([Frame(_read_image(path), path.name, 0)]), 0.0)
    return _capture(uri, cv.VideoCapture(str(path)))


def _capture(uri: str, capture) -> FrameSource:
    if not capture.isOpened():
        raise DsnetError(f"{uri}: could not open (is the device connected, and does OpenCV have the backend "
                         f"it needs, e.g. GStreamer for csi://?)")
    fps = float(capture.get(cv2().CAP_PROP_FPS) or 0.0)

    def frames() -> Iterator[Frame]:
        index = 0
        while True:
            ok, image = capture.read()
            if not ok:
                return
            yield Frame(image, f"{uri}#{index}", index)
            index += 1

    return FrameSource(uri, frames(), fps, capture.release)


def _read_image(path: Path) -> np.ndarray:
    image = cv2().imread(str(path), cv2().IMREAD_COLOR)
    if image is None:
        raise DsnetError(f"{path}: not a readable image")
    return image
