"""scikit-learn's bundled handwritten digits (1,797 8x8 images), as 32x32 RGB with graded corruptions."""

from __future__ import annotations

import numpy as np

from ..errors import DsnetError
from .corruptions import CorruptionConfig
from .splits import Dataset, make_splits
from .transforms import resize

#: Per-channel statistics of the clean, upsampled training images (rounded): what the model is fed.
MEAN = (0.31, 0.31, 0.31)
STD = (0.32, 0.32, 0.32)


def load_digits(*, size: int = 32, seed: int = 0, fractions: tuple[float, float] = (0.15, 0.2),
                corruption: CorruptionConfig | None = None, clean: bool = False) -> Dataset:
    """``corruption`` None: the default graded corruptions (``clean=True``: none at all)."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as exc:
        raise DsnetError(f"the digits dataset needs scikit-learn ({exc}): pip install 'dsnet-export[train]'") from None
    corruption = None if clean else (corruption or CorruptionConfig())
    raw = sklearn_digits()
    images = (raw.images.astype(np.float32) / 16.0)[:, None]
    images = np.repeat(resize(images, size), 3, axis=1).clip(0, 1)
    labels = raw.target.astype(np.int64)
    train, val, test = make_splits(images, labels, fractions, seed, corruption)
    return Dataset("digits", [str(i) for i in range(10)], train, val, test, MEAN, STD, corruption)
