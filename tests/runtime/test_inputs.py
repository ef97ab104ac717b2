"""Inputs for run/calibrate: images preprocessed per the manifest, folders, .npy and .npz."""

import json

import numpy as np
import pytest
from PIL import Image

from dsnet_export import DsnetError
from dsnet_export.cli import main
from dsnet_export.runtime.inputs import iter_inputs, preprocess_image
from dsnet_export.runtime.manifest import InputInfo

SPEC = InputInfo(name="image", shape=[3, 32, 32], layout="NCHW", dtype="float32", mean=[0.5, 0.4, 0.3],
                 std=[0.2, 0.2, 0.25], resize=None, interpolation="bilinear")


def _image(path, size=(40, 30), color=(255, 0, 128)):
    Image.new("RGB", size, color).save(path)
    return path


def test_preprocess_normalises_and_lays_out_chw(tmp_path):
    x = preprocess_image(_image(tmp_path / "a.png"), SPEC)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 5, 5], [(1 - 0.5) / 0.2, (0 - 0.4) / 0.2, (128 / 255 - 0.3) / 0.25], rtol=1e-5)


def test_resize_then_centre_crop(tmp_path):
    spec = InputInfo(**{**SPEC.__dict__, "resize": 36})
    image = Image.new("RGB", (80, 40), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 20, 40))  # white left quarter, cropped away by the centre crop
    x = preprocess_image(image, spec)
    assert x.shape == (3, 32, 32)
    np.testing.assert_allclose(x[0], (0 - 0.5) / 0.2, atol=1e-5)


def test_grey_bundle_takes_one_channel(tmp_path):
    spec = InputInfo(**{**SPEC.__dict__, "shape": [1, 8, 8], "mean": [0.0], "std": [1.0]})
    assert preprocess_image(_image(tmp_path / "g.png"), spec).shape == (1, 8, 8)


def test_iter_inputs_over_files_folders_and_arrays(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    _image(folder / "b.png")
    _image(folder / "sub" / "a.jpg")
    (folder / "notes.txt").write_text("ignored")
    np.save(tmp_path / "one.npy", np.zeros((3, 32, 32)))
    np.savez(tmp_path / "many.npz", first=np.zeros((2, 3, 32, 32), np.float32), second=np.ones((5, 3, 32, 32)))
    items = list(iter_inputs([folder, tmp_path / "one.npy", tmp_path / "many.npz"], SPEC))
    assert [i.name.split("/")[-1] for i in items] == ["b.png", "a.jpg", "one.npy", "many.npz:first", "many.npz:second"]
    assert [i.array.shape[0] for i in items] == [1, 1, 1, 2, 5]
    assert all(i.array.dtype == np.float32 for i in items)


@pytest.mark.parametrize("setup, message", [
    (lambda p: p / "missing.png", "no such file"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no images found"),
    (lambda p: (p / "x.txt").write_text("x") and p / "x.txt", "unsupported input"),
    (lambda p: (p / "bad.png").write_bytes(b"not a png") and p / "bad.png", "not a readable image"),
    (lambda p: np.save(p / "ints.npy", np.zeros((1, 3, 32, 32), np.int32)) or p / "ints.npy", "floating-point"),
    (lambda p: (p / "bad.npy").write_bytes(b"xx") and p / "bad.npy", "not a readable .npy"),
])
def test_input_errors(tmp_path, setup, message):
    with pytest.raises(DsnetError, match=message):
        list(iter_inputs([setup(tmp_path)], SPEC))


def test_run_command_prints_and_writes_json(tiny_bundle, tmp_path, capsys):
    _image(tmp_path / "cat.png")
    np.save(tmp_path / "batch.npy", np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32))
    out = tmp_path / "out.json"
    assert main(["run", str(tiny_bundle.path), str(tmp_path / "cat.png"), str(tmp_path / "batch.npy"),
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cat.png: route" in text and "batch.npy[3]: route" in text and "top-5" in text
    data = json.loads(out.read_text())["inputs"]
    batch = data[str(tmp_path / "batch.npy")]
    assert len(batch["logits"]) == 4 and len(batch["logits"][0]) == 10
    assert len(batch["routes"]) == 4 and len(batch["macs"]) == 4


def test_run_forced_route_and_json_to_stdout(tiny_bundle, tmp_path, capsys):
    np.save(tmp_path / "b.npy", np.zeros((2, 3, 32, 32), np.float32))
    assert main(["run", str(tiny_bundle.path), str(tmp_path / "b.npy"), "--route", "largest", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["inputs"][str(tmp_path / "b.npy")]["routes"] == [5, 5]


def test_run_reports_bad_arrays_cleanly(tiny_bundle, tmp_path, capsys):
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3, 16, 16), np.float32))
    assert main(["run", str(tiny_bundle.path), str(tmp_path / "wrong.npy")]) == 1
    err = capsys.readouterr().err
    assert "does not match" in err and "Traceback" not in err
