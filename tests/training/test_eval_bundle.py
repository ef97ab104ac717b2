"""`python -m dsnet_export eval` on a bundle agrees with `python -m training evaluate` on its checkpoint."""

import json

import pytest

from dsnet_export.cli import main as dsnet_main
from training.__main__ import main as training_main


def test_bundle_eval_matches_the_torch_evaluation(tiny_bundle, tiny_checkpoint, tmp_path, capsys):
    png, bundle_json, torch_json = tmp_path / "eval.png", tmp_path / "b.json", tmp_path / "t.json"
    assert dsnet_main(["eval", str(tiny_bundle.path), "--dataset", "digits", "--split", "val", "--png", str(png),
                       "--json", str(bundle_json)]) == 0
    out = capsys.readouterr().out
    assert "dynamic" in out and "route histogram" in out and png.stat().st_size > 10_000
    assert training_main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--split", "val",
                          "--json", str(torch_json)]) == 0
    onnx_eval, torch_eval = json.loads(bundle_json.read_text()), json.loads(torch_json.read_text())
    torch_routes = {r["name"]: r for r in torch_eval["routes"]}
    for r in onnx_eval["routes"]:
        if r["name"] in torch_routes:
            assert r["accuracy"] == pytest.approx(torch_routes[r["name"]]["accuracy"], abs=1 / 269)
            assert r["macs"] == torch_routes[r["name"]]["macs"]
    assert onnx_eval["dynamic_accuracy"] == pytest.approx(torch_eval["dynamic_accuracy"], abs=1 / 269)
    assert onnx_eval["histogram"] == torch_eval["histogram"]
