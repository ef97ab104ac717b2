"""Project-level promises: CI runs the README's test command; the torch-free parts stay torch-free."""

import re
import subprocess
import sys

from conftest import ROOT


def _readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = [line for block in blocks for line in block.splitlines() if "pytest" in line]
    assert len(commands) == 1, commands
    return commands[0].strip()


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_test_command() in [line.strip() for line in ci]
    assert any("venv" in line for line in ci)


def test_torch_free_modules_do_not_import_torch():
    code = ("import sys, dsnet_export, dsnet_export.arch, dsnet_export.errors; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_import_layers_hold():
    """import-linter's contracts in pyproject.toml: layers (cli > trt|bench|media|serving > export >
    runtime|model|datasets > arch|imaging|evaluation|tables > files|optional|records > errors), no torch below
    export, no training import, no serving engine in the serving core."""
    from pathlib import Path

    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.exists(), "import-linter is not installed: pip install -e '.[dev]'"
    done = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "4 kept, 0 broken" in done.stdout
