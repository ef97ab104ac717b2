"""Missing optional dependencies are one-line user errors naming the extra that installs them."""

import sys

import pytest

from dsnet_export import DsnetError
from dsnet_export.optional import install_hint, optional, require


def test_require_names_the_package_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # Python then refuses to import it
    with pytest.raises(DsnetError, match=r"video needs opencv-python-headless .*pip install 'dsnet-export\[video\]'"):
        require("cv2", "video")
    assert optional("cv2") is None
    assert require("json", "x").dumps([]) == "[]"


def test_a_missing_opencv_is_one_line_in_the_media_code(monkeypatch):
    from dsnet_export.media import open_source

    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(DsnetError, match=r"video and camera I/O needs opencv"):
        open_source("v4l2://0")


def test_install_hints():
    assert install_hint("sklearn.datasets") == "pip install 'dsnet-export[train]'"
    assert install_hint("torch") == "pip install 'dsnet-export[export]'"
    assert install_hint("somethingelse") == "pip install somethingelse"
