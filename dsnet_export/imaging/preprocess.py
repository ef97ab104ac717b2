"""One preprocessing definition, derived from the architecture's input spec (timm's "data config").

``Preprocessing`` holds size, resize, centre crop, interpolation and mean/std.  ``__call__`` is the
evaluation transform every inference path uses; ``train`` is the training transform (random resized
crop + flip, then the same resampling and normalisation), so what a model is trained on and what it
is fed after export cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import DsnetError
from .decode import decode_image

#: PIL.Image.Resampling values by the names the spec uses.
INTERPOLATIONS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3}


@dataclass(frozen=True)
class TrainAugment:
    """Random resized crop (share of the image's area, aspect ratio range) and a horizontal flip."""

    scale: tuple[float, float] = (0.25, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True


@dataclass(frozen=True)
class Preprocessing:
    """Image -> float32 [C, H, W]: short side to ``resize`` then centre crop to H x W (``resize`` None:
    straight to H x W), scaled to [0, 1], normalised with ``mean``/``std``."""

    channels: int
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise DsnetError(f"preprocessing: images have 1 or 3 channels, not {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DsnetError(f"preprocessing: mean and std need {self.channels} values each")
        if not all(s > 0 for s in self.std):
            raise DsnetError("preprocessing: std values must be positive")
        if self.interpolation not in INTERPOLATIONS:
            raise DsnetError(f"preprocessing: unknown interpolation {self.interpolation!r} "
                             f"(one of {', '.join(INTERPOLATIONS)})")
        if self.resize is not None and self.resize < min(self.height, self.width):
            raise DsnetError(f"preprocessing: resize {self.resize} is smaller than the crop "
                             f"{self.height}x{self.width}")

    # -- where it comes from ---------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec) -> Preprocessing:
        """From an ``arch.InputSpec``."""
        return cls(spec.channels, spec.height, spec.width, tuple(spec.mean), tuple(spec.std), spec.resize,
                   spec.interpolation)

    @classmethod
    def from_manifest(cls, info) -> Preprocessing:
        """From a bundle manifest's ``InputInfo`` (which the exporter wrote from the spec)."""
        channels, height, width = info.shape
        return cls(channels, height, width, tuple(info.mean), tuple(info.std), info.resize, info.interpolation)

    @classmethod
    def of(cls, source) -> Preprocessing:
        """``source``: a Preprocessing, an InputSpec or a manifest InputInfo."""
        if isinstance(source, Preprocessing):
            return source
        return cls.from_manifest(source) if hasattr(source, "shape") else cls.from_spec(source)

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        size = f"{self.height}x{self.width}"
        geometry = (f"short side to {self.resize}, centre crop {size}" if self.resize
                    else f"resize to {size}")
        fmt = lambda values: "(" + ", ".join(f"{v:g}" for v in values) + ")"  # noqa: E731
        return (f"{'RGB' if self.channels == 3 else 'grey'}, {geometry} ({self.interpolation}), "
                f"scale to [0, 1], mean {fmt(self.mean)}, std {fmt(self.std)}")

    # -- transforms -------------------------------------------------------------------------
    def __call__(self, image) -> np.ndarray:
        """The evaluation transform: an image path or PIL image -> float32 [C, H, W]."""
        image = decode_image(image, self.channels)
        resample = INTERPOLATIONS[self.interpolation]
        if self.resize:
            scale = self.resize / min(image.size)
            size = (max(self.width, round(image.size[0] * scale)), max(self.height, round(image.size[1] * scale)))
            image = image.resize(size, resample)
            left, top = (image.size[0] - self.width) // 2, (image.size[1] - self.height) // 2
            image = image.crop((left, top, left + self.width, top + self.height))
        else:
            image = image.resize((self.width, self.height), resample)
        return self._to_array(image)

    def train(self, image, rng: np.random.Generator, augment: TrainAugment = TrainAugment()) -> np.ndarray:
        """The training transform: random resized crop (+ flip), resampled and normalised as ``__call__``."""
        from PIL import Image

        image = decode_image(image, self.channels)
        left, top, w, h = _random_crop(image.size, rng, augment)
        image = image.resize((self.width, self.height), INTERPOLATIONS[self.interpolation],
                             box=(left, top, left + w, top + h))
        if augment.flip and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return self._to_array(image)

    def frame(self, frame: np.ndarray) -> np.ndarray:
        """An OpenCV frame (H x W x 3 uint8 BGR) -> float32 [C, H, W], as ``__call__``."""
        from PIL import Image

        return self(Image.fromarray(np.ascontiguousarray(frame[..., ::-1])))

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """Images already at the input size in [0, 1], [N, C, H, W] -> normalised float32."""
        mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        return ((images - mean) / std).astype(np.float32)

    def _to_array(self, image) -> np.ndarray:
        array = np.asarray(image, dtype=np.float32).reshape(self.height, self.width, self.channels) / 255.0
        mean, std = np.array(self.mean, np.float32), np.array(self.std, np.float32)
        return np.ascontiguousarray(((array - mean) / std).transpose(2, 0, 1))


def _random_crop(size: tuple[int, int], rng: np.random.Generator, augment: TrainAugment) -> tuple[int, int, int, int]:
    """(left, top, width, height) of a crop covering ``scale`` of the area at an aspect ratio in ``ratio``."""
    width, height = size
    area = width * height
    log_ratio = (math.log(augment.ratio[0]), math.log(augment.ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*augment.scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    # Fallback: the largest centred crop within the ratio range.
    aspect = width / height
    if aspect < augment.ratio[0]:
        w, h = width, round(width / augment.ratio[0])
    elif aspect > augment.ratio[1]:
        w, h = round(height * augment.ratio[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h
