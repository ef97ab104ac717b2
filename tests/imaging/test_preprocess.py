"""One preprocessing definition from the input spec: evaluation and training transforms agree."""

import numpy as np
import pytest
from PIL import Image

from dsnet_export import DsnetError
from dsnet_export.arch import get_arch
from dsnet_export.imaging import Preprocessing, TrainAugment

IMAGENET = Preprocessing.from_spec(get_arch("ds_mbnet").input)


def test_from_the_arch_spec():
    assert (IMAGENET.height, IMAGENET.width, IMAGENET.resize, IMAGENET.interpolation) == (224, 224, 256, "bicubic")
    assert IMAGENET.mean == (0.485, 0.456, 0.406)
    assert "short side to 256, centre crop 224x224 (bicubic)" in IMAGENET.describe()


def test_eval_transform_resizes_crops_and_normalises():
    prep = Preprocessing(3, 8, 8, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), resize=16)
    image = Image.new("RGB", (64, 32), (255, 0, 128))
    x = prep(image)
    assert x.shape == (3, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [(1 - 0.5) / 0.25, -2.0, (128 / 255 - 0.5) / 0.25], atol=1e-5)


def test_train_transform_is_seeded_and_shares_the_normalisation():
    prep = Preprocessing(3, 16, 16, (0.2, 0.3, 0.4), (0.5, 0.5, 0.5), resize=18)
    pixels = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    a = prep.train(image, np.random.default_rng(1))
    b = prep.train(image, np.random.default_rng(1))
    c = prep.train(image, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 16, 16) and not np.array_equal(a, c)
    # A uniform image has one value everywhere, whatever the crop: the normalisation is the eval one.
    flat = Image.new("RGB", (50, 30), (51, 102, 153))
    np.testing.assert_allclose(prep.train(flat, np.random.default_rng(3)), prep(flat), atol=1e-5)
    straight = Preprocessing(3, 16, 16, (0.2, 0.3, 0.4), (0.5, 0.5, 0.5))  # no resize-then-crop
    whole = TrainAugment(scale=(1.0, 1.0), ratio=(1.5, 1.5), flip=False)  # the crop is the whole 60x40 image
    np.testing.assert_allclose(straight.train(image, np.random.default_rng(4), whole), straight(image), atol=1e-6)


def test_frames_are_bgr():
    prep = Preprocessing(3, 4, 4, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[..., 2] = 255  # red in OpenCV's BGR order
    np.testing.assert_allclose(prep.frame(frame)[0], 1.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"channels": 2}, "1 or 3 channels"), ({"mean": (0.5,)}, "mean and std"), ({"std": (1, 0, 1)}, "positive"),
    ({"interpolation": "cubic"}, "unknown interpolation"), ({"resize": 4}, "smaller than the crop")])
def test_bad_specs_are_user_errors(kwargs, message):
    base = {"channels": 3, "height": 8, "width": 8, "mean": (0, 0, 0), "std": (1, 1, 1)}
    with pytest.raises(DsnetError, match=message):
        Preprocessing(**{**base, **kwargs})
