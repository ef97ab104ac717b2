"""Where annotated frames go: a window (``display://0``), a video file, or a folder of images.

``write(image, key)`` takes the frame's ``Frame.key``: a folder sink writes ``<folder>/<key>.jpg``, so every
video frame gets its own file and images from sub-folders of an input folder are mirrored, not mixed up.
A window falls back to no output, with one warning on stderr, when OpenCV cannot show one (a headless
OpenCV build, or no display on Linux).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import DsnetError
from ..imaging import IMAGE_SUFFIXES
from ._cv import cv2

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class FrameSink:
    def write(self, image: np.ndarray, key: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NullSink(FrameSink):
    def write(self, image, key) -> None:
        pass


class WindowSink(FrameSink):
    """A window; without a GUI (checked up front on Linux, else on the first frame) it warns once and drops
    the frames instead."""

    def __init__(self, title: str, uri: str = "display://0"):
        self.title, self.uri, self.shown, self.headless = title, uri, False, False
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            self._fall_back("no display (DISPLAY is not set)")

    def write(self, image, key) -> None:
        if self.headless:
            return
        cv = cv2()
        try:
            cv.imshow(self.title, image)
            cv.waitKey(1)
        except cv.error as exc:
            detail = " ".join(str(getattr(exc, "err", None) or exc).split())
            self._fall_back("OpenCV was built without GUI support (e.g. opencv-python-headless)"
                            if "not implemented" in detail.lower() else f"OpenCV cannot open a window ({detail})")
            return
        self.shown = True

    def _fall_back(self, reason: str) -> None:
        self.headless = True
        print(f"warning: {self.uri}: {reason}; continuing headless (pass --headless, or a video file or "
              f"folder as the output)", file=sys.stderr)

    def close(self) -> None:
        if self.shown:
            cv2().destroyAllWindows()


class VideoSink(FrameSink):
    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self._writer = path, fps or 30.0, None

    def write(self, image, key) -> None:
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
    """``<folder>/<key>.jpg``, sub-folders mirrored; a key met twice (x.png and x.jpg side by side) gets -2, -3."""

    def __init__(self, path: Path):
        self.path, self._written = path, set()
        path.mkdir(parents=True, exist_ok=True)

    def write(self, image, key) -> None:
        parts = [p for p in PurePosixPath(key.replace("\\", "/")).parts if p not in ("/", ".", "..")] or ["frame"]
        base, n = "/".join(parts), 1
        name = f"{base}.jpg"
        while name in self._written:
            n += 1
            name = f"{base}-{n}.jpg"
        self._written.add(name)
        target = self.path.joinpath(*name.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        if not cv2().imwrite(str(target), image):
            raise DsnetError(f"{target}: OpenCV could not write this image")


def open_sink(uri: str | None, *, fps: float = 30.0, headless: bool = False) -> FrameSink:
    """``None`` or headless with ``display://``: nothing; ``display://0``: a window; ``*.mp4|.avi|.mkv``: a
    video; any other path: a folder of JPEGs (created if needed)."""
    if uri is None or (headless and uri.startswith("display://")):
        return NullSink()
    if uri.startswith("display://"):
        return WindowSink("dsnet-export", uri)
    path = Path(uri)
    if path.suffix.lower() in VIDEO_CODECS:
        return VideoSink(path, fps)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise DsnetError(f"{uri}: give a folder for image output (one file per frame)")
    return FolderSink(path)
