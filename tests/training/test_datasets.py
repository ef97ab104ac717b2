"""Data that needs no download: digits with graded corruptions, and image folders."""

import numpy as np
import pytest
from PIL import Image

from dsnet_export import DsnetError
from dsnet_export.datasets import load_digits, load_image_folder, match_classes, training_batches
from dsnet_export.datasets.corruptions import CorruptionConfig, corrupt
from dsnet_export.imaging import Preprocessing


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
    assert other.split_seed == 1
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


def _folder(root, sizes=((40, 20),), per_class=10, classes=("cat", "dog")):
    colors = {"cat": (200, 30, 30), "dog": (30, 30, 200)}
    for label in classes:
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            w, h = sizes[i % len(sizes)]
            Image.new("RGB", (w, h + i), colors.get(label, (90, 90, 90))).save(root / label / f"{i}.png")
    return root


PREP16 = Preprocessing(3, 16, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_image_folder_streams_whole_or_split(tmp_path):
    data = load_image_folder(_folder(tmp_path), PREP16)
    assert data.classes == ["cat", "dog"]
    assert len(data.labels("all")) == 20
    assert sum(len(data.labels(n)) for n in ("train", "val", "test")) == 20
    x, y = next(data.batches("all", 32))
    assert x.shape == (20, 3, 16, 16) and x.dtype == np.float32
    np.testing.assert_allclose(x[y == 0][:, 0], (200 / 255 - 0.5) / 0.25, atol=1e-5)  # the preprocessing's mean/std
    again = load_image_folder(tmp_path, PREP16, split_seed=0)
    other = load_image_folder(tmp_path, PREP16, split_seed=3)
    np.testing.assert_array_equal(data.indices("test"), again.indices("test"))
    assert not np.array_equal(data.indices("test"), other.indices("test"))
    with pytest.raises(DsnetError, match="one sub-folder of images per class"):
        load_image_folder(tmp_path / "cat", PREP16)
    with pytest.raises(DsnetError, match="no such folder"):
        load_image_folder(tmp_path / "missing", PREP16)


def test_numeric_class_folders_sort_by_number(tmp_path):
    data = load_image_folder(_folder(tmp_path, per_class=2, classes=[str(i) for i in range(12)]), PREP16)
    assert data.classes == [str(i) for i in range(12)]


def test_predefined_train_val_folders(tmp_path):
    _folder(tmp_path / "train", per_class=4)
    _folder(tmp_path / "val", per_class=2)
    data = load_image_folder(tmp_path, PREP16)
    assert data.splits == ("train", "val", "all") and data.split_seed is None
    assert len(data.labels("train")) == 8 and len(data.labels("val")) == 4
    with pytest.raises(DsnetError, match="no split 'test'"):
        data.labels("test")


def test_match_classes_by_name_or_count():
    np.testing.assert_array_equal(match_classes(["b", "c"], ["a", "b", "c"], 3, data="d", model="m"), [1, 2])
    np.testing.assert_array_equal(match_classes(["x", "y"], [], 2, data="d", model="m"), [0, 1])
    with pytest.raises(DsnetError, match="10 classes but m has 1000 outputs and no class names"):
        match_classes([str(i) for i in range(10)], [], 1000, data="d", model="m")
    with pytest.raises(DsnetError, match="zebra"):
        match_classes(["a", "zebra"], ["a", "b", "c"], 3, data="d", model="m")
