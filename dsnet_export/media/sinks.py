"""Where annotated frames go: a window (``display://0``), a video file, or a folder of images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DsnetError
from ..runtime.inputs import IMAGE_SUFFIXES
from ._cv import cv2

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class FrameSink:
    def write(self, image: np.ndarray, name: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NullSink(FrameSink):
    def write(self, image, name) -> None:
        pass


class WindowSink(FrameSink):
    def __init__(self, title: str):
        self.title = title

    def write(self, image, name) -> None:
        cv2().imshow(self.title, image)
        cv2().waitKey(1)

    def close(self) -> None:
        cv2().destroyAllWindows()


class VideoSink(FrameSink):
    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self._writer = path, fps or 30.0, None

    def write(self, image, name) -> None:
        if self._writer is None:  # the frame size is known only now
            cv = cv2()
            fourcc = cv.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()])
            self._writer = cv.VideoWriter(str(self.path), fourcc, self.fps, (image.shape[1], image.shape[0]))
            if not self._writer.isOpened():
                raise DsnetError(f"{self.path}: OpenCV cannot write this video")
        self._writer.write(image)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


class FolderSink(FrameSink):
    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def write(self, image, name) -> None:
        stem = Path(name.replace("#", "_").replace("://", "_").replace("/", "_")).stem
        cv2().imwrite(str(self.path / f"{stem}.jpg"), image)


def open_sink(uri: str | None, *, fps: float = 30.0, headless: bool = False) -> FrameSink:
    """``None`` or headless with ``display://``: nothing; ``display://0``: a window; ``*.mp4|.avi|.mkv``: a
    video; any other path: a folder of JPEGs (created if needed)."""
    if uri is None or (headless and uri.startswith("display://")):
        return NullSink()
    if uri.startswith("display://"):
        return WindowSink("dsnet-export")
    path = Path(uri)
    if path.suffix.lower() in VIDEO_CODECS:
        return VideoSink(path, fps)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise DsnetError(f"{uri}: give a folder for image output (one file per frame)")
    return FolderSink(path)
