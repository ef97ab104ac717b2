"""Data that needs no download: digits with graded corruptions, and image folders."""

import numpy as np
import pytest
from PIL import Image

from dsnet_export import DsnetError
from dsnet_export.datasets import load_digits, load_image_folder, training_batches
from dsnet_export.datasets.corruptions import CorruptionConfig, corrupt


def test_digits_splits_are_fixed_stratified_and_reproducible(digits):
    again = load_digits()
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(digits.split(name).images, again.split(name).images)
    sizes = [len(digits.split(n).labels) for n in ("train", "val", "test")]
    assert sum(sizes) == 1797 and sizes[1] > 200 and sizes[2] > 300
    assert digits.train.images.shape[1:] == (3, 32, 32)
    for name in ("val", "test"):
        counts = np.bincount(digits.split(name).labels, minlength=10)
        assert counts.min() >= 0.8 * counts.max()
    other = load_digits(seed=1)
    assert not np.array_equal(other.test.labels, digits.test.labels)


def test_corruption_grows_with_severity(digits):
    clean = load_digits(clean=True)
    np.testing.assert_array_equal(clean.test.labels, digits.test.labels)
    change = np.abs(digits.test.images - clean.test.images).mean(axis=(1, 2, 3))
    s = digits.test.severity
    assert np.all(change[s == 0] == 0) and np.all(change[s > 0] > 0)
    assert 0.15 < np.mean(s == 0) < 0.35
    low, high = change[(s > 0) & (s < 0.5)].mean(), change[s > 0.8].mean()
    assert high > 1.5 * low
    assert np.all(digits.train.severity == 0)  # corrupted afresh per batch instead


def test_corrupt_is_seeded_and_bounded():
    x = np.random.default_rng(1).random((4, 3, 32, 32)).astype(np.float32)
    s = np.array([0.0, 0.3, 0.7, 1.0], np.float32)
    a = corrupt(x, s, np.random.default_rng(5), CorruptionConfig())
    b = corrupt(x, s, np.random.default_rng(5), CorruptionConfig())
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and np.array_equal(a[0], x[0])


def test_training_batches_augment_corrupt_and_normalize(digits):
    batches = list(training_batches(digits, 64, np.random.default_rng(0)))
    assert sum(len(y) for _, y in batches) == len(digits.train.labels)
    x, y = batches[0]
    assert x.shape == (64, 3, 32, 32) and x.dtype == np.float32 and y.dtype == np.int64
    plain = list(training_batches(digits, 64, np.random.default_rng(0), augment=None, corrupted=False))[0][0]
    assert not np.allclose(x, plain)
    assert abs(float(plain.mean())) < 0.5  # normalised with the dataset's mean/std


def test_image_folder(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(10):
            color = (200, 30, 30) if label == "cat" else (30, 30, 200)
            Image.new("RGB", (40, 20 + i), color).save(tmp_path / label / f"{i}.png")
    data = load_image_folder(tmp_path, size=16)
    assert data.classes == ["cat", "dog"]
    assert sum(len(data.split(n).labels) for n in ("train", "val", "test")) == 20
    assert data.train.images.shape[1:] == (3, 16, 16)
    cats = data.train.images[data.train.labels == 0]
    assert np.allclose(cats[:, 0], 200 / 255, atol=1e-2)
    with pytest.raises(DsnetError, match="one sub-folder of images per class"):
        load_image_folder(tmp_path / "cat")
