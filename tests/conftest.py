"""Shared fixtures: the official-code oracle in ../shared/oracle and small models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def oracle_dir() -> Path:
    """DSNET_ORACLE_DIR, or ../shared/oracle relative to the project root."""
    return Path(os.environ.get("DSNET_ORACLE_DIR", ROOT.parent / "shared" / "oracle"))


@pytest.fixture(scope="session")
def oracle() -> Path:
    """The oracle folder; missing data skips locally and fails when CI is set."""
    path = oracle_dir()
    needed = ["dsmbnet_oracle.pth.tar", "oracle_inputs.npz", "reference_logits.npz"]
    missing = [n for n in needed if not (path / n).is_file()]
    if missing:
        message = f"oracle data missing in {path}: {', '.join(missing)} (set DSNET_ORACLE_DIR)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
