"""The examples in `run --help`, `calibrate --help`, `eval --help` and the sample app's --help run as written.

Each block's own commands make its files (`python -m training export-digits DIR`); `python -m dsnet_export
build` (the embedded digits model -> engines/dsnet-digits) is stood in for by a copy of the tiny bundle,
which has the same input (3x32x32) and classes (10).  Camera and stream examples are only parsed.
"""

import shlex
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

from dsnet_export.cli import calibrate, main, run
from dsnet_export.cli import eval as eval_command

CLASSIFY = ROOT / "samples" / "jetson" / "classify.py"


def _commands(doc: str) -> list[list[str]]:
    """The example commands of a docstring: the lines after 'examples', comments dropped, '&&' split."""
    block = doc.split("\nexamples", 1)[1].split("\n", 1)[1]
    commands = []
    for line in block.splitlines():
        line = line.split("  #", 1)[0].strip()
        if not line:
            break
        commands += [shlex.split(part) for part in line.split("&&")]
    return commands


def _classify_doc() -> str:
    done = subprocess.run([sys.executable, str(CLASSIFY), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("source", ["run", "calibrate", "eval", "classify"])
def test_help_examples_run_as_written(source, tiny_bundle, tmp_path, monkeypatch, capsys):
    from training.__main__ import main as training_main

    doc = {"run": lambda: run.__doc__, "calibrate": lambda: calibrate.__doc__, "eval": lambda: eval_command.__doc__,
           "classify": _classify_doc}[source]()
    commands = _commands(doc)
    assert commands and all(c[0] == "python" for c in commands)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_bundle.path, tmp_path / "engines" / "dsnet-digits")
    ran = 0
    for command in commands:
        text = shlex.join(command)
        if command[1:] == ["-m", "dsnet_export", "build"]:
            continue  # the tiny bundle stands in for the embedded digits model
        if command[1:3] == ["-m", "training"]:
            assert command[3] == "export-digits", text
            assert training_main(command[3:]) == 0, text
        elif command[1:3] == ["-m", "dsnet_export"]:
            assert main(command[3:]) == 0, f"{text}\n{capsys.readouterr().err}"
            ran += 1
        else:
            assert command[1] == "samples/jetson/classify.py", text
            if any("://" in arg for arg in command):
                continue  # a camera or a stream: not here
            done = subprocess.run([sys.executable, str(CLASSIFY), *command[2:]], capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, f"{text}\n{done.stderr}"
            assert " route " in done.stdout and "frames; average" in done.stdout
            ran += 1
    assert ran >= 2
