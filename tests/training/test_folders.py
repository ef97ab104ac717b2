"""Training on an image folder at the architecture's real input size, streamed through DataLoader workers,
and the split, classes and preprocessing carried from training to the bundle and its evaluation."""

import json

import numpy as np
import pytest
from PIL import Image

from dsnet_export import DsnetError, load_supernet
from dsnet_export.cli import main as cli
from dsnet_export.datasets import load_image_folder
from dsnet_export.export import build_bundle
from dsnet_export.imaging import Preprocessing
from dsnet_export.runtime import load_bundle
from training.__main__ import main as training
from training.data import recorded_data

CLASSES = ["circle", "square", "stripes"]
SIZES = [(64, 64), (80, 60), (50, 70), (96, 72)]


def _draw(kind: str, size, rng) -> Image.Image:
    w, h = size
    pixels = rng.integers(0, 40, (h, w, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    if kind == "circle":
        pixels[(yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(w, h) / 3) ** 2] = (220, 60, 60)
    elif kind == "square":
        pixels[h // 4:3 * h // 4, w // 4:3 * w // 4] = (60, 220, 60)
    else:
        pixels[(xx // 6) % 2 == 0] = (60, 60, 220)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for kind in CLASSES:
        (root / kind).mkdir()
        for i in range(12):
            _draw(kind, SIZES[i % len(SIZES)], rng).save(root / kind / f"{i:02d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def trained(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "supernet.safetensors"
    code = training(["supernet", "--dataset", str(photos), "--arch", "ds_mbnet_tiny", "--input-size", "64",
                     "--epochs", "1", "--batch-size", "8", "--workers", "2", "--split-seed", "3",
                     "--recalibration-batches", "1", "--warmup-epochs", "1", "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_folder_training_records_what_it_used(trained, photos, capsys):
    model = load_supernet(trained)
    assert model.spec.num_classes == 3  # the 10-class preset gets one output per class folder
    assert (model.spec.input.height, model.spec.input.width) == (64, 64)
    data = recorded_data(trained)
    assert data["classes"] == CLASSES and data["split_seed"] == 3
    assert Preprocessing(**{**data["preprocessing"], "mean": tuple(data["preprocessing"]["mean"]),
                            "std": tuple(data["preprocessing"]["std"])}) == Preprocessing.from_spec(model.spec.input)


def test_bundle_carries_the_training_preprocessing_classes_and_split(trained, photos, tmp_path, capsys):
    report = build_bundle(trained, tmp_path / "b", progress=False)
    m = load_bundle(report.path).manifest
    spec = load_supernet(trained).spec
    assert Preprocessing.from_manifest(m.input) == Preprocessing.from_spec(spec.input)
    assert m.input.shape == [3, 64, 64] and m.labels == CLASSES and m.source["split_seed"] == "3"

    # eval --split test scores exactly the held-out images of training's split (seed 3), as training evaluate does.
    held_out = load_image_folder(photos, Preprocessing.from_spec(spec.input), split_seed=3).indices("test")
    assert cli(["eval", str(report.path), "--dataset", str(photos), "--split", "test",
                "--json", str(tmp_path / "e.json")]) == 0
    onnx_eval = json.loads((tmp_path / "e.json").read_text())
    assert onnx_eval["samples"] == len(held_out) and onnx_eval["split"] == "test"
    assert training(["evaluate", "--checkpoint", str(trained), "--dataset", str(photos), "--split", "test",
                     "--json", str(tmp_path / "t.json")]) == 0
    torch_eval = json.loads((tmp_path / "t.json").read_text())
    assert torch_eval["samples"] == onnx_eval["samples"]
    assert abs(torch_eval["dynamic_accuracy"] - onnx_eval["dynamic_accuracy"]) < 1e-9
    # Without --split the whole folder is scored.
    assert cli(["eval", str(report.path), "--dataset", str(photos), "--json", str(tmp_path / "all.json")]) == 0
    assert json.loads((tmp_path / "all.json").read_text())["samples"] == 36


def test_gate_stage_refuses_another_split(trained, photos, tmp_path, capsys):
    code = training(["gate", "--checkpoint", str(trained), "--dataset", str(photos), "--split-seed", "0",
                     "--epochs", "1", "--out", str(tmp_path / "g.safetensors"), "--quiet"])
    assert code == 1
    assert "trained on the split drawn with seed 3" in capsys.readouterr().err
    assert not (tmp_path / "g.safetensors").exists()


def test_gate_stage_on_the_folder_keeps_the_split(trained, photos, tmp_path, capsys):
    out = tmp_path / "g.safetensors"
    assert training(["gate", "--checkpoint", str(trained), "--dataset", str(photos), "--epochs", "1",
                     "--batch-size", "8", "--workers", "0", "--out", str(out), "--quiet"]) == 0
    assert recorded_data(out)["split_seed"] == 3 and recorded_data(out)["classes"] == CLASSES


def test_training_on_other_classes_than_the_checkpoint_is_refused(trained, tmp_path, capsys):
    other = tmp_path / "other"
    for kind in ("a", "b", "c"):
        (other / kind).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (64, 64), (i * 40, 0, 0)).save(other / kind / f"{i}.png")
    code = training(["gate", "--checkpoint", str(trained), "--dataset", str(other), "--epochs", "1",
                     "--out", str(tmp_path / "g.safetensors"), "--quiet"])
    assert code == 1 and "not the ones" in capsys.readouterr().err


def test_digits_preprocessing_mismatch_is_refused(small_digits, tmp_path):
    import dataclasses

    from training.config import SupernetConfig
    from training.loops import train_supernet

    wrong = dataclasses.replace(small_digits, preprocessing=Preprocessing(3, 32, 32, (0.5,) * 3, (0.5,) * 3))
    with pytest.raises(DsnetError, match="expects"):
        train_supernet(SupernetConfig(arch="ds_mbnet_tiny", epochs=1), wrong, tmp_path / "x.safetensors",
                       progress=False, log=lambda s: None)


def test_an_unreadable_image_is_skipped_and_named(photos, tmp_path, capsys):
    import shutil

    from training.data import TrainBatches

    broken = tmp_path / "photos"
    shutil.copytree(photos, broken)
    (broken / "circle" / "00.jpg").write_bytes(b"not a jpeg")
    data = load_image_folder(broken, Preprocessing(3, 32, 32, (0.5,) * 3, (0.25,) * 3), split_seed=3)
    batches = TrainBatches(data, 4, workers=1)
    seen = sum(len(y) for _, y in batches.epoch(np.random.default_rng(0)))
    bad = broken / "circle" / "00.jpg"
    assert bad in data.paths("train")  # split seed 3 puts it there
    assert seen == len(data.labels("train")) - 1
    assert f"skipped {bad}: not a readable image" in capsys.readouterr().err


def test_augmentation_flags_reach_the_workers(photos):
    from training.data import TrainBatches

    data = load_image_folder(photos, Preprocessing(3, 32, 32, (0.5,) * 3, (0.25,) * 3))
    augment = TrainBatches(data, 4, crop_scale=0.6, flip=False)._folder.augment
    assert augment.scale == (0.6, 1.0) and augment.flip is False
    assert TrainBatches(data, 4, augment=False)._folder.augment is None  # BN recalibration: the eval transform
