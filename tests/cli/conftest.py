"""Fixtures the CLI tests share: a writable copy of the tiny bundle and a small input batch."""

import shutil

import numpy as np
import pytest


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    """A copy of the tiny bundle the test may change."""
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_bundle.path, copy)
    return copy


@pytest.fixture
def inputs(tmp_path):
    """Six random 3x32x32 inputs as a .npy file."""
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).standard_normal((6, 3, 32, 32)).astype(np.float32))
    return path
