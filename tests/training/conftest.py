import dataclasses

import numpy as np
import pytest

from dsnet_export.datasets import Split, load_digits


def _head(split: Split, n: int) -> Split:
    return Split(split.images[:n], split.labels[:n], split.severity[:n])


@pytest.fixture(scope="session")
def digits():
    return load_digits()


@pytest.fixture(scope="session")
def small_digits(digits):
    """A few batches of each split, so training loops run in seconds."""
    return dataclasses.replace(digits, train=_head(digits.train, 96), val=_head(digits.val, 64),
                               test=_head(digits.test, 64))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
