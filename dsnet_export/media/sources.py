"""Frame sources named by URI, as jetson-inference names them.

* ``csi://0``                 a Jetson MIPI CSI camera, through a GStreamer ``nvarguscamerasrc`` pipeline
* ``v4l2://0``, ``/dev/video0`` a V4L2 (USB) camera
* ``rtsp://...``, ``http://...`` a network stream
* ``file.mp4`` (any video OpenCV reads), ``image.jpg``, ``folder/`` of images (recursively, sorted)

Image files are decoded by ``dsnet_export.imaging.decode_image`` (EXIF orientation, 16-bit scaled, alpha
dropped), as ``run`` decodes them, then handed over as BGR frames.  An unreadable image in a folder raises
``DsnetError`` unless ``open_source(..., on_error=callback)`` is given: then ``callback(path, error)`` is
called and the image skipped.  A single image file that cannot be read is always an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DsnetError
from ..imaging import IMAGE_SUFFIXES, decode_image, list_images
from ..runtime.inputs import SKIPPED, load_or_skip
from ._cv import cv2

CSI_PIPELINE = ("nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
                "framerate={fps}/1 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR "
                "! appsink drop=true max-buffers=1")


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # H x W x 3, uint8, BGR (OpenCV's order)
    name: str          # for printing: the image's path, or "<uri>#<index>" for videos, cameras and streams
    index: int
    key: str           # unique within the source, for output files: a relative path without suffix,
                       # "a/x" for folder/a/x.png, "x" for the image file x.png, "clip_000012" for frame 12


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


def open_source(uri: str, *, width: int = 1280, height: int = 720, fps: int = 30,
                on_error: Callable[[str, DsnetError], None] | None = None) -> FrameSource:
    """Open ``uri``; ``width``/``height``/``fps`` only configure CSI cameras; ``on_error``: see the module."""
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
        images = list_images(path)
        if not images:
            raise DsnetError(f"{path}: no images found")
        return FrameSource(uri, _folder(path, images, on_error), 0.0)
    if not path.is_file():
        raise DsnetError(f"{uri}: no such file, folder, camera or stream")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return FrameSource(uri, iter([Frame(read_image(path), str(path), 0, path.stem)]), 0.0)
    return _capture(uri, cv.VideoCapture(str(path)), path.stem)


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> H x W x 3 uint8 BGR, decoded as every other path of the product decodes it."""
    rgb = np.asarray(decode_image(path, 3), dtype=np.uint8)
    return np.ascontiguousarray(rgb[..., ::-1])


def _folder(root: Path, images: list[Path], on_error) -> Iterator[Frame]:
    for index, path in enumerate(images):
        image = load_or_skip(read_image, path, on_error)
        if image is SKIPPED:
            continue
        yield Frame(image, str(path), index, path.relative_to(root).with_suffix("").as_posix())


def _capture(uri: str, capture, stem: str | None = None) -> FrameSource:
    if not capture.isOpened():
        raise DsnetError(f"{uri}: could not open (is the device connected, and does OpenCV have the backend "
                         f"it needs, e.g. GStreamer for csi://?)")
    fps = float(capture.get(cv2().CAP_PROP_FPS) or 0.0)
    stem = stem or re.sub(r"[^A-Za-z0-9.-]+", "_", uri).strip("_.") or "frame"  # rtsp://cam/x -> rtsp_cam_x

    def frames() -> Iterator[Frame]:
        index = 0
        while True:
            ok, image = capture.read()
            if not ok:
                return
            yield Frame(image, f"{uri}#{index}", index, f"{stem}_{index:06d}")
            index += 1

    return FrameSource(uri, frames(), fps, capture.release)
