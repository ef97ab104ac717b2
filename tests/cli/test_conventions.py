"""One command-line convention (issue 12): shared option groups, one meaning per flag name, `--json PATH|-` and
`--quiet` on every command, `--backend` on every command that runs a bundle, grouped help with defaults, the
`build-trt` command, hidden aliases for renamed spellings, and library errors spelt in the command's flags."""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

import pytest

from dsnet_export.cli import COMMANDS, main, make_parser
from dsnet_export.cli.options import flag_names, parameter_flags
from dsnet_export.runtime import load_bundle
from dsnet_export.runtime.backends import backend_names

ROOT = Path(__file__).resolve().parents[2]

#: The smallest valid arguments of every command; {bundle}, {x}, {ckpt} and {tmp} are filled in.
MINIMAL = {
    "build": ["--checkpoint", "{ckpt}", "--out", "{tmp}/built"],
    "build-trt": ["{bundle}"],
    "export-format": ["{bundle}", "--format", "litert"],
    "inspect": ["{bundle}"],
    "verify": ["{bundle}"],
    "run": ["{bundle}", "{x}"],
    "calibrate": ["{bundle}", "--data", "{x}", "--target-macs", "1G", "--out", "{tmp}/budget.json"],
    "eval": ["{bundle}"],
    "bench": ["{bundle}", "--rounds", "1", "--warmup", "0", "--skip-memory", "--no-torch", "--batch-sizes", "2",
              "--idle-wait-ms", "0", "--skip-e2e", "--block-ms", "1"],
    "triton-repo": ["{bundle}", "--out", "{tmp}/repo"],
    "serve": ["{bundle}"],
    "loadtest": ["http://127.0.0.1:9", "--bundle", "{bundle}"],
}
#: The commands that start or load a server: parsed here, run in tests/serving.
SERVERS = {"serve", "loadtest"}
#: Commands too slow to run once per convention test (a minute of conversions): their JSON, notes and errors
#: are checked where they are tested (tests/export/test_formats.py).
SLOW = {"export-format"}
#: The commands that run a bundle, and so take --backend.
RUNS_A_BUNDLE = {"run", "eval", "calibrate", "verify", "bench"}


@pytest.fixture
def bundle(bundle_copy):
    return bundle_copy  # tests/cli/conftest.py


def argv_of(command, bundle, inputs, tmp_path, ckpt="absent.safetensors", *extra):
    return [command, *(a.format(bundle=bundle, x=inputs, ckpt=ckpt, tmp=tmp_path) for a in MINIMAL[command]), *extra]


def parse(argv):
    parser, _ = make_parser()
    return parser.parse_args([str(a) for a in argv])


def test_every_command_is_covered():
    assert set(MINIMAL) == set(COMMANDS)
    assert RUNS_A_BUNDLE < set(COMMANDS)


# -- 1. the shared groups: --quiet and --json everywhere, --backend where a bundle runs ---------------------------
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_quiet_and_json(command, tmp_path):
    args = parse(argv_of(command, "b", "x.npy", tmp_path, "c", "--quiet", "--json", "-"))
    assert args.quiet is True and args.json == "-"
    args = parse(argv_of(command, "b", "x.npy", tmp_path, "c", "--json", tmp_path / "out.json"))
    assert args.quiet is False and args.json == str(tmp_path / "out.json")


@pytest.mark.parametrize("command", sorted(RUNS_A_BUNDLE))
@pytest.mark.parametrize("backend", backend_names())
def test_every_command_that_runs_a_bundle_takes_backend(command, backend, tmp_path):
    assert parse(argv_of(command, "b", "x.npy", tmp_path, "c", "--backend", backend)).backend == backend
    assert parse(argv_of(command, "b", "x.npy", tmp_path, "c")).backend == "ort"


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - RUNS_A_BUNDLE))
def test_commands_that_run_no_bundle_take_no_backend(command, tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse(argv_of(command, "b", "x.npy", tmp_path, "c", "--backend", "ort"))
    assert "unrecognized arguments: --backend" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "eval", "calibrate"])
def test_the_ort_runtime_flags_are_shared(command, tmp_path):
    args = parse(argv_of(command, "b", "x.npy", tmp_path, "c", "--providers", "cpu", "--threads", "2", "--no-verify"))
    assert (args.providers, args.threads, args.verify) == ("cpu", 2, False)


def test_ort_options_with_another_backend_are_one_line_errors(bundle, inputs, capsys):
    assert main(["run", str(bundle), str(inputs), "--backend", "trt", "--threads", "2"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "error: --providers, --threads and --shared-pool are ONNX Runtime options; leave " \
                                "them out with --backend trt\n"


def test_bench_with_tensorrt_here_is_a_one_line_error(bundle, capsys):
    """bench --backend trt compares TensorRT with ONNX Runtime on the device; here TensorRT is missing."""
    assert main(["bench", str(bundle), "--backend", "trt"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: TensorRT") and err.count("\n") == 1


@pytest.mark.parametrize("command", sorted(RUNS_A_BUNDLE))
def test_every_bundle_command_runs_on_openvino(command, bundle, inputs, tmp_path, capsys):
    """run, eval, calibrate, verify and bench take --backend openvino unchanged (OpenVINO from the extra)."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    assert main(argv_of(command, bundle, inputs, tmp_path, "absent", "--backend", "openvino", "--quiet")) == 0
    assert "error" not in capsys.readouterr().err


# -- --json - : the JSON on stdout and nothing else; the same JSON to a file ------------------------------------
@pytest.fixture
def fake_gpu(monkeypatch):
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from trt.fakes import FakeCudart, install_cudart, make_fake_trt
    finally:
        sys.path.remove(str(ROOT / "tests"))
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("10.3.0"))
    install_cudart(monkeypatch, FakeCudart(), "new")


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in SERVERS | SLOW])
def test_json_to_stdout_is_the_only_thing_on_stdout(command, bundle, inputs, tiny_checkpoint, tmp_path, capsys,
                                                    request):
    if command == "build-trt":
        request.getfixturevalue("fake_gpu")
    argv = argv_of(command, bundle, inputs, tmp_path, tiny_checkpoint, "--json", "-")
    assert main(argv) == 0, capsys.readouterr().err
    out, err = capsys.readouterr()
    data = json.loads(out)  # fails on anything printed besides the one JSON document
    assert isinstance(data, dict) and data
    assert "Traceback" not in err
    if command in ("build", "build-trt", "inspect", "verify", "run", "calibrate"):
        assert "bundle" in data


def test_json_summaries_hold_what_was_written(bundle, inputs, tiny_checkpoint, tmp_path, capsys, fake_gpu):
    assert main(argv_of("build", bundle, inputs, tmp_path, tiny_checkpoint, "--json", "-", "--quiet")) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["bundle"] == str(tmp_path / "built") and built["trt"] is None
    assert [r["file"] for r in built["routes"]] == [r.file for r in load_bundle(tmp_path / "built").manifest.routes]
    assert main(["build-trt", str(bundle), "--max-batch", "4", "--json", "-", "--quiet"]) == 0
    plans = json.loads(capsys.readouterr().out)
    assert plans["max_batch"] == 4 and set(plans["plans"]) == set(load_bundle(bundle).manifest.plans_for(
        plans["tag"]).plans)
    assert main(argv_of("calibrate", bundle, inputs, tmp_path, "c", "--json", "-")) == 0
    calibrated = json.loads(capsys.readouterr().out)
    assert calibrated["budget_file"] == str(tmp_path / "budget.json")
    assert calibrated["budget"] == json.loads((tmp_path / "budget.json").read_text())
    assert main(["verify", str(bundle), "--json", "-"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["files_ok"] and verified["ok"] and verified["files"] == len(load_bundle(bundle).manifest.files)


@pytest.mark.parametrize("quiet", [False, True], ids=["notes", "quiet"])
def test_json_to_a_file_keeps_the_report_and_quiet_drops_the_note(bundle, tmp_path, capsys, quiet):
    path = tmp_path / "inspect.json"
    assert main(["inspect", str(bundle), "--json", str(path), *(["--quiet"] if quiet else [])]) == 0
    out = capsys.readouterr().out
    assert "route_0.onnx" in out  # the report, quiet or not
    assert (f"wrote {path}" in out) is not quiet
    data = json.loads(path.read_text())
    assert data["manifest"] == load_bundle(bundle).manifest.to_dict()
    assert main(["inspect", str(bundle), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == data


def test_run_json_to_stdout_leaves_the_per_sample_lines_out(bundle, inputs, capsys):
    assert main(["run", str(bundle), str(inputs), "--json", "-"]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)["inputs"]) == 1 and "route" not in err


# -- 2. build-trt ----------------------------------------------------------------------------------------------
TRT_FLAGS = ["--precision", "fp16", "--max-batch", "6", "--opt-batch", "2", "--workspace", "512",
             "--timing-cache", "trt.cache", "--full-plans"]


@pytest.mark.parametrize("argv", [["build-trt", "b"], ["build", "--trt", "--bundle", "b"], ["build", "--trt"]],
                         ids=["build-trt", "build-trt-bundle", "build-trt-one-step"])
def test_build_and_build_trt_share_the_tensorrt_options(argv):
    args = parse([*argv, *TRT_FLAGS])
    assert (args.precision, args.max_batch, args.opt_batch, args.workspace, args.timing_cache, args.strip) == \
           ("fp16", 6, 2, 512, "trt.cache", False)
    args = parse(argv)
    assert (args.precision, args.max_batch, args.opt_batch, args.workspace, args.timing_cache, args.strip) == \
           ("fp32", 8, None, 1024, None, True)


@pytest.mark.parametrize("argv, message", [
    (["build-trt"], "the following arguments are required: DIR"),
    (["build-trt", "b", "--precision", "int8"], "invalid choice: 'int8'"),
    (["build-trt", "b", "--max-batch", "0"], "must be at least 1"),
    (["build-trt", "b", "--workspace", "lots"], "expected an integer"),
    (["build-trt", "b", "--checkpoint", "c.pth"], "unrecognized arguments: --checkpoint"),
])
def test_build_trt_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("spelling", [["build-trt", "{bundle}"], ["build", "--trt", "--bundle", "{bundle}"]],
                         ids=["build-trt", "build-trt-bundle"])
@pytest.mark.parametrize("missing, message", [
    ("tensorrt", "error: TensorRT's Python package is not installed"),
    ("gpu", "error: no usable CUDA device"),
])
def test_build_trt_without_a_gpu_is_one_line_and_exit_1(spelling, missing, message, bundle, monkeypatch, capsys):
    if missing == "tensorrt":
        monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on this machine: no TensorRT
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        try:
            from trt.fakes import FakeCudart, install_cudart, make_fake_trt
        finally:
            sys.path.remove(str(ROOT / "tests"))
        monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("10.3.0"))
        install_cudart(monkeypatch, FakeCudart(devices=0), "new")
    before = sorted(p.relative_to(bundle) for p in bundle.rglob("*"))
    assert main([a.format(bundle=bundle) for a in spelling] + ["--precision", "fp16", "--json", "-"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err
    assert f"python -m dsnet_export build-trt {bundle} --precision fp16 --max-batch 8" in err
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*")) == before


def test_build_trt_on_a_missing_bundle_names_the_bundle(tmp_path, capsys):
    assert main(["build-trt", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "nothing") in err and "TensorRT" not in err and err.count("\n") == 1


def test_build_bundle_without_trt_points_at_build_trt(bundle, capsys):
    assert main(["build", "--bundle", str(bundle)]) == 1
    assert capsys.readouterr().err == "error: --bundle only makes sense with --trt (or use: build-trt DIR)\n"


# -- 3. one meaning per flag name; renamed spellings stay as hidden aliases ---------------------------------------
def test_verify_samples_and_its_old_batch_spelling(bundle, tiny_checkpoint, capsys):
    assert parse(["verify", "b", "--samples", "3"]).samples == 3
    assert parse(["verify", "b"]).samples == 4
    assert capsys.readouterr().err == ""
    assert parse(["verify", "b", "--batch", "3"]).samples == 3
    err = capsys.readouterr().err
    assert err == "warning: verify --batch is deprecated; use --samples N (--batch is a batch size in run, eval " \
                  "and calibrate)\n"
    for spelling in ("--samples", "--batch"):
        assert main(["verify", str(bundle), "--checkpoint", str(tiny_checkpoint), spelling, "3", "--json", "-"]) == 0
        out, err = capsys.readouterr()
        assert json.loads(out)["comparisons"][0]["samples"] == 3
        assert ("deprecated" in err) is (spelling == "--batch")


def test_eval_split_seed_and_its_old_seed_spelling(capsys):
    assert parse(["eval", "b", "--split-seed", "7"]).split_seed == 7
    assert parse(["eval", "b"]).split_seed is None
    assert capsys.readouterr().err == ""
    assert parse(["eval", "b", "--seed", "7"]).split_seed == 7
    assert capsys.readouterr().err.startswith("warning: eval --seed is deprecated; use --split-seed N")


@pytest.mark.parametrize("command, hidden", [("verify", "--batch"), ("eval", "--seed"), ("build", "--bundle")])
def test_old_spellings_are_hidden_from_help(command, hidden, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert not re.search(rf"{hidden}\b", capsys.readouterr().out.split("\noptions:", 1)[1])


def test_a_flag_name_means_one_thing():
    """Where two commands take the same option, it is parsed the same way (e.g. --batch is a batch size of
    images or arrays, never a count of random inputs)."""
    parser, _ = make_parser()
    seen: dict[str, dict[str, argparse.Action]] = {}
    for name, command in parser.command_parsers.items():
        for action in command._actions:
            if action.help == argparse.SUPPRESS:
                continue
            for flag in action.option_strings:
                seen.setdefault(flag, {})[name] = action
    assert {n for n, a in seen["--batch"].items()} == {"run", "eval", "calibrate"}
    assert {n for n in seen["--seed"]} == {"bench", "verify", "loadtest"}  # seeds random inputs; eval's is --split-seed
    for flag, actions in seen.items():
        if flag == "--out":  # where the command's own product goes: a bundle directory (build), a file (calibrate)
            continue
        kinds = {(a.nargs, a.type, a.const, type(a).__name__) for a in actions.values()}
        assert len(kinds) == 1, f"{flag} is parsed differently by {sorted(actions)}"


# -- 4. help: grouped, every option explained with its default ----------------------------------------------------
@pytest.mark.parametrize("command", COMMANDS)
def test_help_groups_every_option_and_states_defaults(command):
    parser, _ = make_parser()
    p = parser.command_parsers[command]
    titles = [g.title for g in p._action_groups if g._group_actions]
    assert {"inputs", "output"} <= set(titles)
    assert ("runtime" in titles) is (command in RUNS_A_BUNDLE)
    for group in p._action_groups:
        for action in group._group_actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            assert group.title not in ("options", "positional arguments"), f"{command} {action.dest} is ungrouped"
            assert action.help, f"{command} {action.dest} has no help"
            if action.option_strings and action.nargs != 0:
                assert "default" in action.help or "required" in action.help, \
                    f"{command} {action.option_strings[0]}: no default in its help"


# -- 6. library errors name parameters; the command line spells them as its flags ----------------------------------
@pytest.mark.parametrize("text, expected", [
    ("max_batch= must be an integer in 1..4096, got 0", "--max-batch must be an integer in 1..4096, got 0"),
    ("opt_batch= must be between 1 and max_batch= (4), got 9", "--opt-batch must be between 1 and --max-batch (4), "
                                                              "got 9"),
    ("opset=99 is not supported (use 13..21)", "--opset 99 is not supported (use 13..21)"),
    ("input_size=40,40: the checkpoint", "--input-size 40,40: the checkpoint"),
    ("data=: no samples found", "--data: no samples found"),
    ("give labels=FILE (names)", "give --labels FILE (names)"),
    ("workspace_mib= must be positive", "--workspace must be positive"),
    ("the_max_batch= and x.max_batch= and --max-batch stay", "the_max_batch= and x.max_batch= and --max-batch stay"),
    ("unknown= stays", "unknown= stays"),
])
def test_parameter_names_become_flags(text, expected):
    flags = {"max_batch": "--max-batch", "opt_batch": "--opt-batch", "opset": "--opset", "input_size": "--input-size",
             "data": "--data", "labels": "--labels", "workspace_mib": "--workspace"}
    assert flag_names(text, flags) == expected


def test_parameter_flags_come_from_the_command_parser():
    parser, modules = make_parser()
    flags = parameter_flags(parser.command_parsers["build-trt"], modules["build-trt"].PARAMETER_FLAGS)
    assert flags["max_batch"] == "--max-batch" and flags["workspace_mib"] == "--workspace"
    assert "strip" not in flags  # --full-plans takes no value: not a parameter=value spelling
    assert parameter_flags(parser.command_parsers["verify"])["samples"] == "--samples"  # not the hidden --batch


@pytest.mark.parametrize("argv, message", [
    (["build-trt", "{bundle}", "--max-batch", "4", "--opt-batch", "6"],
     "error: --opt-batch must be between 1 and --max-batch (4), got 6\n"),
    (["bench", "{bundle}", "--rounds", "0"], "error: --rounds must be at least 1\n"),
    (["bench", "{bundle}", "--block-ms", "0"], "error: --block-ms must be positive\n"),
    (["build", "--checkpoint", "{ckpt}", "--out", "{tmp}/b", "--opset", "99"],
     "error: --opset 99 is not supported (use 13..21)\n"),
])
def test_library_errors_are_spelt_in_flags(argv, message, bundle, tiny_checkpoint, tmp_path, capsys):
    assert main([a.format(bundle=bundle, ckpt=tiny_checkpoint, tmp=tmp_path) for a in argv]) == 1
    assert capsys.readouterr().err == message


def test_eval_asks_for_labels_by_its_flag(bundle, tmp_path, capsys):
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(tmp_path / "pets" / name / "a.png")
    assert main(["eval", str(bundle), "--dataset", str(tmp_path / "pets")]) == 1
    err = capsys.readouterr().err
    assert "give --labels FILE" in err and "labels=" not in err


def _messages(tree: ast.AST):
    """The text of every error raised and warning given (f-string parts joined, values left out)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if not (name.endswith(("Error", "Unavailable")) or name == "warn"):
            continue
        parts = []
        for arg in node.args[:1]:
            for piece in ast.walk(arg):
                if isinstance(piece, ast.Constant) and isinstance(piece.value, str):
                    parts.append(piece.value)
        yield node.lineno, "".join(parts)


def test_library_messages_name_parameters_not_flags():
    """Below the CLI an error names the parameter (``max_batch=``) and the CLI spells it as its flag; only a
    whole command to run ('python -m dsnet_export ...') may carry flags."""
    offenders = []
    for path in sorted((ROOT / "dsnet_export").rglob("*.py")):
        if "cli" in path.relative_to(ROOT / "dsnet_export").parts:
            continue
        for line, text in _messages(ast.parse(path.read_text(encoding="utf-8"))):
            if re.search(r"(?<![\w-])--[a-z]", text) and "python -m dsnet_export" not in text:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {text[:80]}")
    assert offenders == []
