"""User mistakes end in one clear error line (non-zero exit, no traceback) before any work, and lose nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import training.__main__ as training_cli
from dsnet_export import BundleError, DsnetError, InputError
from dsnet_export.cli import main
from dsnet_export.cli.argtypes import output_file_or_stdout
from dsnet_export.cli.build import parse_routes
from dsnet_export.runtime import Dispatcher, load_bundle
from dsnet_export.runtime.budget import BUDGET_NAME, load_budget

ROOT = Path(__file__).resolve().parents[2]


def parse_error(capsys, argv, run=main) -> str:
    """Run a command that must fail while its arguments are parsed; its stderr."""
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: argument" in err
    return err


# -- 1. output paths are checked before any work ---------------------------------------------------------------
OUTPUT_CASES = {
    "run --json": (main, ["run", "{bundle}", "{x}", "--json", "{out}"]),
    "eval --json": (main, ["eval", "{bundle}", "--json", "{out}"]),
    "eval --png": (main, ["eval", "{bundle}", "--png", "{out}"]),
    "calibrate --out": (main, ["calibrate", "{bundle}", "--data", "{x}", "--target-macs", "1G", "--out", "{out}"]),
    "bench --json": (main, ["bench", "{bundle}", "--json", "{out}"]),
    "bench --png": (main, ["bench", "{bundle}", "--png", "{out}"]),
    "calibrate --json": (main, ["calibrate", "{bundle}", "--data", "{x}", "--target-macs", "1G", "--json", "{out}"]),
    "verify --json": (main, ["verify", "{bundle}", "--json", "{out}"]),
    "inspect --json": (main, ["inspect", "{bundle}", "--json", "{out}"]),
    "build --json": (main, ["build", "--json", "{out}", "--out", "{out}.bundle"]),
    "build-trt --json": (main, ["build-trt", "{bundle}", "--json", "{out}"]),
    "training evaluate --png": (training_cli.main, ["evaluate", "--checkpoint", "{ckpt}", "--png", "{out}"]),
    "training evaluate --json": (training_cli.main, ["evaluate", "--checkpoint", "{ckpt}", "--json", "{out}"]),
}


@pytest.mark.parametrize("where", ["missing folder", "a directory"])
@pytest.mark.parametrize("case", sorted(OUTPUT_CASES))
def test_output_paths_are_checked_when_parsing(case, where, tiny_bundle, inputs, tmp_path, capsys):
    run, argv = OUTPUT_CASES[case]
    flag = case.split()[-1]
    if where == "missing folder":
        out, expected = tmp_path / "no-such-folder" / "out.file", "does not exist"
    else:
        out, expected = tmp_path / "a-folder", "is a directory"
        out.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.format(bundle=tiny_bundle.path, x=inputs, out=out, ckpt=tmp_path / "absent.safetensors")
            for a in argv]
    err = parse_error(capsys, argv, run)
    assert f"argument {flag}: {out}: " in err and expected in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, nothing created


def test_json_to_stdout_stays_allowed(tiny_bundle, inputs, capsys):
    assert output_file_or_stdout("-") == "-"
    assert main(["run", str(tiny_bundle.path), str(inputs), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]


def test_build_out_that_is_a_file_or_a_foreign_folder_fails_before_loading(tmp_path, capsys):
    absent = str(tmp_path / "absent.safetensors")  # were the arguments accepted, loading it would fail (exit 1)
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    err = parse_error(capsys, ["build", "--checkpoint", absent, "--out", str(target)])
    assert "exists and is not a directory" in err and target.read_text() == "keep me"
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"jpeg")
    err = parse_error(capsys, ["build", "--checkpoint", absent, "--out", str(folder)])
    assert "not a dsnet-export bundle" in err and (folder / "cat.jpg").read_bytes() == b"jpeg"


def test_training_out_that_is_a_directory_fails_before_loading_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("training.data.load_training_data", _no_work)
    assert training_cli.main(["supernet", "--out", str(tmp_path), "--arch", "ds_mbnet_tiny"]) == 1
    err = capsys.readouterr().err
    assert f"--out {tmp_path}: is a directory" in err and "Traceback" not in err


def test_calibrate_out_never_leaves_a_temp_file_and_keeps_the_old_budget(tiny_bundle, inputs, tmp_path, monkeypatch,
                                                                          capsys):
    out = tmp_path / "budget.json"
    out.write_text("the previous budget")
    real_replace = os.replace

    def failing_replace(src, dst, *args, **kwargs):
        if Path(dst) == out:
            raise PermissionError(13, "Permission denied")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing_replace)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["calibrate", str(tiny_bundle.path), "--data", str(inputs), "--target-macs", "1G",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "cannot write the budget file (Permission denied); the previous one is unchanged" in err
    assert out.read_text() == "the previous budget"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no stray temp file


# -- 2. counts: batches and threads --------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["eval", "{bundle}", "--batch", "0"],
    ["calibrate", "{bundle}", "--data", "{x}", "--target-macs", "1G", "--batch", "0"],
    ["run", "{bundle}", "{x}", "--batch", "0"],
    ["run", "{bundle}", "{x}", "--top", "0"],
    ["run", "{bundle}", "{x}", "--top", "-3"],
    ["run", "{bundle}", "{x}", "--threads", "0"],
    ["run", "{bundle}", "{x}", "--threads", "-1"],
    ["eval", "{bundle}", "--threads", "0"],
    ["calibrate", "{bundle}", "--data", "{x}", "--target-macs", "1G", "--threads", "-1"],
    ["bench", "{bundle}", "--threads", "0"],
    ["verify", "{bundle}", "--samples", "0"],
    ["verify", "{bundle}", "--batch", "0"],
    ["build", "--trt", "--bundle", "{bundle}", "--max-batch", "0"],
    ["build-trt", "{bundle}", "--max-batch", "0"],
    ["build-trt", "{bundle}", "--opt-batch", "0"],
], ids=lambda argv: " ".join(a for a in argv if "{" not in a))
def test_counts_below_one_are_parse_errors(argv, tiny_bundle, inputs, capsys):
    err = parse_error(capsys, [a.format(bundle=tiny_bundle.path, x=inputs) for a in argv])
    assert "must be at least 1" in err


@pytest.mark.parametrize("argv, message", [
    (["calibrate", "{bundle}", "--data", "{x}", "--target-macs", "1e400"], "out of range"),
    (["calibrate", "{bundle}", "--data", "{x}", "--target-macs", "9" * 5000], "out of range|expected"),
    (["calibrate", "{bundle}", "--data", "{x}", "--target-macs", "nan"], "out of range|expected a number"),
    (["calibrate", "{bundle}", "--data", "{x}", "--target-macs", "1e30"], "out of range"),
    (["run", "{bundle}", "{x}", "--threads", "5000"], "at most 1024 threads"),
    (["run", "{bundle}", "{x}", "--threads", "9" * 5000], "expected an integer"),
    (["run", "{bundle}", "{x}", "--batch", "9" * 5000], "expected an integer"),
], ids=["macs 1e400", "macs 5000 digits", "macs nan", "macs 1e30", "threads 5000", "threads 5000 digits",
        "batch 5000 digits"])
def test_absurd_numbers_are_parse_errors(argv, message, tiny_bundle, inputs, capsys):
    err = parse_error(capsys, [a.format(bundle=tiny_bundle.path, x=inputs) for a in argv])
    assert re.search(message, err), err
    assert len(err) < 2000


def test_threads_must_be_an_integer(tiny_bundle, inputs, capsys):
    assert "expected an integer, got 'many'" in parse_error(
        capsys, ["run", str(tiny_bundle.path), str(inputs), "--threads", "many"])


# -- 3. --routes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("routes, message", [
    ("0,,1,2,3", "item 2 is empty"),
    ("0,1,2,3,", "item 5 is empty"),
    (",", "expected a comma-separated list of routes"),
    ("0,1,2,3,3", "route '3' is listed twice"),
    ("0,1,2,3,uniform:4,uniform:04", "route 'uniform:04' is listed twice"),
    ("0,1,2,3,widest", "unknown route 'widest'"),
    ("0,1,2,3,uniform:x", "unknown route 'uniform:x'"),
])
def test_routes_list_errors_are_one_line_at_parse_time(routes, message, tmp_path, capsys):
    absent = str(tmp_path / "absent.safetensors")
    err = parse_error(capsys, ["build", "--checkpoint", absent, "--routes", routes])
    assert message in err and len([line for line in err.splitlines() if "error" in line]) == 1


def test_routes_list_parses():
    assert parse_routes("0, 1,2 ,3,uniform:08,largest") == [0, 1, 2, 3, "uniform:8", "largest"]


# -- 4. a closed stdout (| head) -----------------------------------------------------------------------------
def _with_closed_stdout(code: str, *args) -> subprocess.CompletedProcess:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command prints anything, as after `| head -1`
    try:
        return subprocess.run([sys.executable, "-c", code, *map(str, args)], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write)


def test_dsnet_export_into_a_closed_pipe_exits_quietly(tiny_bundle):
    result = _with_closed_stdout("import sys; from dsnet_export.cli import main; sys.exit(main(sys.argv[1:]))",
                                 "inspect", tiny_bundle.path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr and result.stderr == ""


def test_python_m_dsnet_export_into_a_closed_pipe_exits_quietly(tiny_bundle):
    result = _with_closed_stdout("import runpy, sys; sys.argv[0] = 'dsnet_export'; "
                                 "runpy.run_module('dsnet_export', run_name='__main__')", "inspect", tiny_bundle.path)
    assert result.returncode == 1 and result.stderr == ""


def test_training_into_a_closed_pipe_exits_quietly():
    code = ("import sys, training.__main__ as cli\n"
            "def chatty(args):\n"
            "    for i in range(20000):\n"
            "        print('line', i)\n"
            "    return 0\n"
            "cli._run = chatty\n"
            "sys.exit(cli.main(['export-digits', 'unused']))\n")
    result = _with_closed_stdout(code)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


# -- 5. a checkpoint that is not one -------------------------------------------------------------------------
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40)


@pytest.mark.parametrize("content, message", [
    (PNG, "is a PNG image, not a checkpoint"),
    (b'{"state_dict": {}, "arch": "ds_mbnet"}\n', "is JSON text, not a checkpoint"),
    (bytes(range(7, 250, 3)) * 5, "is not a PyTorch or safetensors checkpoint (unrecognised bytes)"),
    (b"", "is empty, not a checkpoint"),
])
def test_build_with_a_file_that_is_not_a_checkpoint(content, message, tmp_path, capsys):
    path = tmp_path / "model.pth.tar"
    path.write_bytes(content)
    assert main(["build", "--checkpoint", str(path), "--out", str(tmp_path / "b"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {path}: {message}\n"
    assert "weights_only" not in err and "pickle" not in err


def test_a_pickle_that_carries_code_is_refused_without_unsafe_advice(tmp_path):
    import torch

    from dsnet_export import CheckpointError, load_supernet

    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {}, "hook": _Hook()}, path)
    with pytest.raises(CheckpointError, match="refused to load") as err:
        load_supernet(path)
    assert "weights_only" not in str(err.value) and "_Hook" in str(err.value)


class _Hook:
    pass


def test_no_message_suggests_weights_only_false():
    pattern = re.compile(r"weights_only\s*=\s*False|weights_only` set to `False")
    offenders = [str(p.relative_to(ROOT)) for folder in ("dsnet_export", "training", "samples")
                 for p in (ROOT / folder).rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


# -- 6./7. manifest arch and budget files are parsed strictly (more in test_strict_parsing.py) ------------------
def _edit_manifest(bundle: Path, edit) -> None:
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["arch"].pop("num_classes"), "arch.num_classes: missing field"),
    (lambda d: d["arch"]["stem"].pop("channels"), "arch.stem.channels: missing field"),
    (lambda d: d["arch"].__setitem__("num_classes", "10"), "arch.num_classes: expected an integer"),
    (lambda d: d["arch"]["stages"][1].__setitem__("channels", 16), "arch.stages[1].channels: expected a list"),
    (lambda d: d["arch"]["gate"].__setitem__("routes", [0, 1.5]), "arch.gate.routes[1]: expected an integer"),
    (lambda d: d["arch"].__setitem__("stages", {}), "arch.stages: expected a list"),
])
def test_a_broken_manifest_arch_fails_at_load_naming_the_field(bundle_copy, edit, field, capsys):
    _edit_manifest(bundle_copy, edit)
    with pytest.raises(BundleError, match=re.escape(field)):
        load_bundle(bundle_copy, verify=False)
    assert main(["inspect", str(bundle_copy)]) == 1
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err


@pytest.mark.parametrize("edit, field", [
    (lambda b: b.__setitem__("bias", ["0.5", 0.0, 0.0, 0.0]), "bias[0]: expected a number, got str"),
    (lambda b: b.__setitem__("bias", [float("nan"), 0.0, 0.0, 0.0]), "NaN is not a JSON number"),
    (lambda b: b.__setitem__("bias", [0.0, 0.0]), "histogram: has 4 counts for 2 bias values"),
    (lambda b: b.pop("target_macs"), "target_macs: missing field"),
    (lambda b: b.__setitem__("colour", "blue"), "unknown field(s) colour"),
    (lambda b: b.__setitem__("version", 2), "version: unsupported 2"),
    (lambda b: b.__setitem__("samples", True), "samples: expected an integer, got bool"),
    (lambda b: b.__setitem__("samples", -1), "samples: expected a non-negative integer"),
])
def test_a_broken_budget_file_fails_naming_the_field(bundle_copy, inputs, edit, field, capsys):
    assert main(["calibrate", str(bundle_copy), "--data", str(inputs), "--target-macs", "1G"]) == 0
    path = bundle_copy / BUDGET_NAME
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=re.escape(field)):
        load_budget(path, load_bundle(bundle_copy))
    capsys.readouterr()
    assert main(["run", str(bundle_copy), str(inputs), "--budget"]) == 1
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err


def test_a_budget_with_the_wrong_bias_length_names_it(bundle_copy, inputs):
    assert main(["calibrate", str(bundle_copy), "--data", str(inputs), "--target-macs", "1G"]) == 0
    path = bundle_copy / BUDGET_NAME
    data = json.loads(path.read_text())
    data.update(bias=[0.0] * 5, histogram=[data["samples"], 0, 0, 0, 0])
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"bias: needs 4 values"):
        Dispatcher.load(bundle_copy, budget=True)


# -- 8. bad input to the dispatcher: one error type, a ValueError and a DsnetError ------------------------------
@pytest.fixture(scope="module")
def dispatcher(tiny_bundle):
    with Dispatcher.load(tiny_bundle.path) as d:
        yield d


def _good(n=2):
    return np.random.default_rng(1).standard_normal((n, 3, 32, 32)).astype(np.float32)


def _with(value):
    x = _good()
    x[1, 0, 3, 4] = value
    return x


@pytest.mark.parametrize("x, route, message", [
    (_good()[0], None, "must be a batch"),
    (_good()[:, :, :16], None, "does not match"),
    (_good().astype(np.float64), None, "dtype must be float32"),
    (_good().tolist(), None, "must be a numpy array"),
    (_good(0), None, "batch is empty"),
    (_with(np.nan), None, "NaN or infinite"),
    (_with(np.inf), None, "NaN or infinite"),
    (_with(-np.inf), "largest", "NaN or infinite"),
    (_with(np.nan), 2, "NaN or infinite"),
    (_good(), "uniform:77", "unknown route"),
    (_good(), 99, "unknown route"),
], ids=["rank", "shape", "dtype", "list", "empty", "nan", "inf", "inf-fixed-route", "nan-forced-route",
        "route-name", "route-index"])
def test_bad_dispatcher_input_is_an_input_error(dispatcher, x, route, message):
    with pytest.raises(InputError, match=message) as err:
        dispatcher.run(x, route)
    assert isinstance(err.value, ValueError) and isinstance(err.value, DsnetError)


def test_gate_logits_and_bias_checks_are_input_errors_too(dispatcher):
    with pytest.raises(InputError):
        dispatcher.gate_logits(_with(np.nan))
    with pytest.raises(InputError):
        dispatcher.gate_bias = [0.0, "x"]


# -- 9. rebuilding a bundle and its budget.json ----------------------------------------------------------------
@pytest.fixture
def calibrated(tiny_checkpoint, inputs, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert main(["build", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--quiet"]) == 0
    assert main(["calibrate", str(out), "--data", str(inputs), "--target-macs", "1G"]) == 0
    capsys.readouterr()
    return out


def test_rebuilding_keeps_a_budget_that_is_still_valid(calibrated, tiny_checkpoint, inputs, capsys):
    before = json.loads((calibrated / BUDGET_NAME).read_text())
    assert main(["build", "--checkpoint", str(tiny_checkpoint), "--out", str(calibrated), "--quiet",
                 "--routes", "0,1,2,3,uniform:4,largest", "--standalone"]) == 0
    assert "kept budget.json" in capsys.readouterr().out
    after = json.loads((calibrated / BUDGET_NAME).read_text())
    assert after["manifest_sha256"] != before["manifest_sha256"]
    assert {k: v for k, v in after.items() if k != "manifest_sha256"} == \
           {k: v for k, v in before.items() if k != "manifest_sha256"}
    with Dispatcher.load(calibrated, budget=True) as d:  # valid for the new build
        np.testing.assert_allclose(d.gate_bias, before["bias"])
        d(np.load(inputs))


def test_rebuilding_from_another_checkpoint_drops_the_budget_and_says_why(calibrated, tiny_model, tmp_path, capsys):
    import torch

    from dsnet_export import load_supernet, save_supernet

    model = load_supernet(save_supernet(tiny_model, tmp_path / "copy.safetensors"))
    with torch.no_grad():
        model.classifier.bias.add_(0.25)
    other = save_supernet(model, tmp_path / "retrained.safetensors")
    assert main(["build", "--checkpoint", str(other), "--out", str(calibrated), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "dropped the previous budget.json: the bundle was built from a different checkpoint" in out
    assert "recalibrate" in out
    assert not (calibrated / BUDGET_NAME).exists()


def test_rebuilding_at_another_size_drops_the_budget(calibrated, tiny_checkpoint, capsys):
    assert main(["build", "--checkpoint", str(tiny_checkpoint), "--out", str(calibrated), "--quiet",
                 "--input-size", "40"]) == 0
    out, err = capsys.readouterr()
    assert "warning: --input-size 40,40" in err
    assert "dropped the previous budget.json: the input size changed (32x32 -> 40x40)" in out
    assert not (calibrated / BUDGET_NAME).exists()


def test_a_failed_rebuild_keeps_bundle_and_budget(calibrated, tiny_checkpoint, capsys):
    before = {p.name: p.read_bytes() for p in calibrated.iterdir() if p.is_file()}
    assert main(["build", "--checkpoint", str(tiny_checkpoint), "--out", str(calibrated), "--quiet",
                 "--routes", "0,1,2,3,uniform:99"]) == 1
    assert {p.name: p.read_bytes() for p in calibrated.iterdir() if p.is_file()} == before


# -- 11. the console script ------------------------------------------------------------------------------------
def test_console_script_runs_and_returns_the_exit_code(tmp_path):
    script = shutil.which("dsnet-export", path=str(Path(sys.executable).parent)) or shutil.which("dsnet-export")
    assert script, "dsnet-export is not installed: pip install -e ."
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage: dsnet-export")
    result = subprocess.run([script, "inspect", str(tmp_path / "nothing")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


# -- 12. training arguments ------------------------------------------------------------------------------------
def _no_work(*args, **kwargs):
    raise AssertionError("the command started working before checking its arguments")


@pytest.mark.parametrize("argv, message", [
    (["supernet", "--epochs", "0"], "--epochs 0: must be at least 1"),
    (["supernet", "--lr", "-0.1"], "--lr -0.1: must be a positive number"),
    (["supernet", "--lr", "nan"], "--lr nan: must be a positive number"),
    (["supernet", "--arch", "resnet9000"], "--arch resnet9000: unknown architecture (one of"),
    (["supernet", "--crop-scale", "0"], "--crop-scale 0.0: must be in (0, 1]"),
    (["supernet", "--momentum", "1"], "--momentum 1.0: must be at least 0.0 and below 1.0"),
    (["supernet", "--device", "gpu"], "--device gpu: not a torch device"),
    (["gate", "--checkpoint", "{absent}", "--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["gate", "--checkpoint", "{absent}", "--lr", "-1"], "--lr -1.0: must be a positive number"),
    (["gate", "--checkpoint", "{absent}", "--workers", "-2"], "--workers -2: must be at least 0"),
])
def test_training_arguments_are_checked_before_any_work(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("training.data.load_training_data", _no_work)
    monkeypatch.setattr("training.data.data_for_checkpoint", _no_work)
    monkeypatch.setattr("dsnet_export.load_supernet", _no_work, raising=False)
    argv = [a.format(absent=tmp_path / "absent.safetensors") for a in argv]
    assert training_cli.main([argv[0], "--out", str(tmp_path / "out.safetensors"), *argv[1:]]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
    assert "Traceback" not in err


def test_training_device_cuda_without_cuda(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("training.data.load_training_data", _no_work)
    assert training_cli.main(["supernet", "--out", str(tmp_path / "o.safetensors"), "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    version = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    build = "CPU build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
    assert err.startswith(f"error: --device cuda: CUDA is not available on this machine (torch {version} {build}")


def test_build_warns_when_the_input_size_is_not_the_training_size(tmp_path, capsys):
    from dsnet_export.cli import main as cli

    assert cli(["build", "--out", str(tmp_path / "b"), "--input-size", "48", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: --input-size 48,48: the checkpoint was trained at 32x32" in err and "Traceback" not in err
    assert cli(["build", "--out", str(tmp_path / "c"), "--input-size", "32", "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err
