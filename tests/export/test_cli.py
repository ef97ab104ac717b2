"""The build / inspect / verify commands, run in-process through the real argument parser."""

import shutil

import pytest

import dsnet_export.export.build as build_module
from dsnet_export.cli import COMMANDS, main


def test_help_explains_every_command(capsys):
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
    assert "--routes" in capsys.readouterr().out


@pytest.fixture(scope="module")
def built(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "tiny"
    assert main(["build", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--quiet",
                 "--routes", "0,1,2,3,uniform:4"]) == 0
    return out


def test_build_prints_a_summary(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["build", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "route_3.onnx" in text and "weights.safetensors" in text and "x the widest route" in text


def test_inspect(built, capsys):
    assert main(["inspect", str(built)]) == 0
    text = capsys.readouterr().out
    assert "uniform:4" in text and "forced" in text and "MAdds" in text


def test_verify_passes_then_catches_tampering(built, tiny_checkpoint, tmp_path, capsys):
    assert main(["verify", str(built), "--checkpoint", str(tiny_checkpoint)]) == 0
    assert "route_4.onnx" in capsys.readouterr().out
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    with (copy / "gate.onnx").open("r+b") as f:
        f.seek(20)
        byte = f.read(1)
        f.seek(20)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert main(["verify", str(copy)]) == 1
    assert "sha256" in capsys.readouterr().err


def test_verify_reports_a_different_checkpoint(built, tiny_checkpoint, tmp_path, capsys):
    import torch

    from dsnet_export import load_supernet, save_supernet

    model = load_supernet(tiny_checkpoint)
    with torch.no_grad():
        model.classifier.bias.add_(0.5)
    changed = save_supernet(model, tmp_path / "changed.safetensors")
    assert main(["verify", str(built), "--checkpoint", str(changed)]) == 1
    assert "MISMATCH" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--routes", "0,1"], "must include every route the gate can choose"),
    (["--routes", "0,1,2,3,uniform:99"], "out of range"),
    (["--input-size", "2"], "input-size"),
    (["--arch", "ds_mbnet"], "checkpoint is for architecture 'ds_mbnet_tiny'"),
])
def test_bad_arguments_are_one_line_errors(tiny_checkpoint, tmp_path, capsys, argv, message):
    assert main(["build", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "x"), "--quiet", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_missing_default_model_is_explained(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(build_module, "DEFAULT_MODEL", tmp_path / "absent.safetensors")
    assert main(["build", "--out", str(tmp_path / "x"), "--quiet"]) == 1
    assert "embedded default model is missing" in capsys.readouterr().err
