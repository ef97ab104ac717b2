"""Atomic writes: killed at any step, a write leaves the old file whole (or nothing) and no temporary file."""

import os

import pytest

from dsnet_export import files
from dsnet_export.files import atomic_file, write_json_atomic, write_text_atomic


class Killed(BaseException):
    """Stands for the process dying (or Ctrl-C) at that step."""


def _kill(*args, **kwargs):
    raise Killed


@pytest.mark.parametrize("step", ["write", "fsync", "chmod", "replace"])
@pytest.mark.parametrize("existing", [True, False], ids=["over-a-file", "new-file"])
def test_killed_at_each_step_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch, step, existing):
    target = tmp_path / "out.json"
    if existing:
        target.write_text("old")
    if step != "write":
        monkeypatch.setattr(files.os, step, _kill)
    with pytest.raises(Killed):
        with atomic_file(target) as tmp:
            tmp.write_text("new, half")
            if step == "write":
                raise Killed
    assert (target.read_text() == "old") if existing else not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == (["out.json"] if existing else [])


def test_a_finished_write_replaces_with_the_usual_permissions(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    write_json_atomic(target, {"a": 1})
    assert target.read_text() == '{\n "a": 1\n}\n'
    assert os.stat(target).st_mode & 0o777 == 0o644  # not mkstemp's private 0o600
    write_text_atomic(target, "text")
    assert target.read_text() == "text" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


@pytest.mark.parametrize("writer", ["checkpoint", "run-json", "eval-json"])
def test_users_of_atomic_writes_leave_old_outputs_whole_when_killed(writer, tmp_path, monkeypatch, tiny_model,
                                                                    tiny_bundle):
    import numpy as np

    from dsnet_export import save_supernet
    from dsnet_export.cli import main

    target = tmp_path / ("model.safetensors" if writer == "checkpoint" else "out.json")
    target.write_bytes(b"previous")
    monkeypatch.setattr(files.os, "replace", _kill)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(Killed):
        if writer == "checkpoint":
            save_supernet(tiny_model, target)
        elif writer == "run-json":
            main(["run", str(tiny_bundle.path), str(tmp_path / "x.npy"), "--json", str(target)])
        else:
            main(["eval", str(tiny_bundle.path), "--dataset", "digits", "--json", str(target)])
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, "x.npy"])
