"""scikit-learn's bundled handwritten digits (1,797 8x8 images), upsampled, with graded corruptions."""

from __future__ import annotations

import numpy as np

from ..imaging import Preprocessing
from ..optional import require
from .corruptions import CorruptionConfig
from .splits import DEFAULT_FRACTIONS, ArrayDataset, make_splits
from .transforms import resize

#: Per-channel statistics of the clean, upsampled training images (rounded); the ``ds_mbnet_digits``
#: preset's input spec uses them.
MEAN = (0.31, 0.31, 0.31)
STD = (0.32, 0.32, 0.32)
DEFAULT_PREPROCESSING = Preprocessing(3, 32, 32, MEAN, STD)


def load_digits(preprocessing: Preprocessing = DEFAULT_PREPROCESSING, *, seed: int = 0,
                fractions: tuple[float, float] = DEFAULT_FRACTIONS, corruption: CorruptionConfig | None = None,
                clean: bool = False) -> ArrayDataset:
    """Digits at ``preprocessing``'s size and channels.  ``corruption`` None: the default graded
    corruptions (``clean=True``: none at all)."""
    sklearn_digits = require("sklearn.datasets", "the digits dataset").load_digits
    corruption = None if clean else (corruption or CorruptionConfig())
    raw = sklearn_digits()
    images = (raw.images.astype(np.float32) / 16.0)[:, None]
    images = resize(images, (preprocessing.height, preprocessing.width)).clip(0, 1)
    images = np.repeat(images, preprocessing.channels, axis=1)
    labels = raw.target.astype(np.int64)
    train, val, test = make_splits(images, labels, fractions, seed, corruption)
    return ArrayDataset("digits", [str(i) for i in range(10)], train, val, test, preprocessing, corruption, seed)
