"""The same images give the same numbers through every path: eval on the built-in digits, eval on the
digits exported as PNG files, and run on those files."""

import json

import numpy as np
import pytest

from dsnet_export.cli import main as cli
from dsnet_export.datasets import load_digits
from dsnet_export.export import build_bundle
from training.export_digits import export_split


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory):
    return build_bundle(out=tmp_path_factory.mktemp("digits") / "bundle", progress=False).path


@pytest.fixture(scope="module")
def test_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits_test")
    export_split(load_digits(), "test", root)
    return root


def _eval(bundle, dataset, tmp_path, *extra):
    out = tmp_path / f"eval_{len(list(tmp_path.iterdir()))}.json"
    assert cli(["eval", str(bundle), "--dataset", str(dataset), "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_eval_on_the_exported_folder_equals_the_built_in_split_and_run(digits_bundle, test_folder, tmp_path,
                                                                      capsys):
    built_in = _eval(digits_bundle, "digits", tmp_path)
    folder = _eval(digits_bundle, test_folder, tmp_path)
    assert folder["samples"] == built_in["samples"] == 359  # the whole folder, not a re-split
    for a, b in zip(folder["routes"], built_in["routes"]):
        assert a["name"] == b["name"] and abs(a["accuracy"] - b["accuracy"]) <= 0.005  # PNG rounding
    assert abs(folder["dynamic_accuracy"] - built_in["dynamic_accuracy"]) <= 0.005

    assert cli(["run", str(digits_bundle), str(test_folder), "--json", str(tmp_path / "run.json")]) == 0
    inputs = json.loads((tmp_path / "run.json").read_text())["inputs"]
    assert len(inputs) == 359
    hits = [int(np.argmax(r["logits"][0])) == int(name.split("/")[-2]) for name, r in inputs.items()]
    assert np.mean(hits) == pytest.approx(folder["dynamic_accuracy"], abs=1e-12)


def test_a_folder_split_is_only_scored_when_asked(digits_bundle, test_folder, tmp_path, capsys):
    held_out = _eval(digits_bundle, test_folder, tmp_path, "--split", "test")
    assert held_out["split"] == "test" and 60 < held_out["samples"] < 80  # 20 % of each class folder


def test_class_folders_must_match_the_bundle(digits_bundle, tmp_path, capsys):
    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        (tmp_path / "pets" / name / "a.png").write_bytes(_png())
    assert cli(["eval", str(digits_bundle), "--dataset", str(tmp_path / "pets")]) == 1
    assert "cat, dog are not classes of" in capsys.readouterr().err


def test_a_1000_class_bundle_on_a_10_class_folder_is_an_error(oracle_bundle, test_folder, capsys):
    assert cli(["eval", str(oracle_bundle.path), "--dataset", str(test_folder)]) == 1
    err = capsys.readouterr().err
    assert "10 classes" in err and "1000 outputs" in err and "--labels" in err


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()
