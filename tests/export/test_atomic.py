"""A failed build never leaves a half bundle and never destroys the previous one."""

import pytest

import dsnet_export.export.build as build_module
from dsnet_export import DsnetError
from dsnet_export.export import build_bundle
from dsnet_export.runtime import load_bundle


def _listing(path):
    return sorted(p.name for p in path.iterdir())


def test_failed_build_keeps_the_previous_bundle(tiny_model, tmp_path, monkeypatch):
    target = tmp_path / "bundle"
    build_bundle(model=tiny_model, out=target, progress=False)
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    calls = {"n": 0}
    real_emit = build_module.emit_engine

    def failing_emit(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6 + 3:  # 6 engines: after the dry run over all six, mid-way through writing them
            raise RuntimeError("simulated crash while writing engines")
        return real_emit(*args, **kwargs)

    monkeypatch.setattr(build_module, "emit_engine", failing_emit)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_bundle(model=tiny_model, out=target, routes=[0, 1, 2, 3, "uniform:4"], progress=False)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert _listing(tmp_path) == ["bundle"], "temporary directories left behind"
    load_bundle(target)


def test_parity_failure_aborts_before_the_swap(tiny_model, tmp_path, monkeypatch):
    from dsnet_export.runtime.compare import EngineDiff, ParityError

    rows = [EngineDiff("gate.onnx", "gate", 1e-6, 1e-7, 1e-4), EngineDiff("route_0.onnx", "uniform:0", 1.0, 0.1, 1e-4)]
    monkeypatch.setattr(build_module, "compare_with_supernet", lambda *a, **k: rows)
    with pytest.raises(ParityError, match="disagree with the torch supernet: 1 of 2 engines") as caught:
        build_bundle(model=tiny_model, out=tmp_path / "new", progress=False)
    assert caught.value.rows == rows and "route_0.onnx" in str(caught.value) and "NO" in str(caught.value)
    assert _listing(tmp_path) == []


def test_rebuild_replaces_a_bundle(tiny_model, tmp_path):
    target = tmp_path / "bundle"
    build_bundle(model=tiny_model, out=target, progress=False)
    report = build_bundle(model=tiny_model, out=target, routes=[0, 1, 2, 3, "uniform:4"], progress=False)
    assert len(load_bundle(target).manifest.routes) == 5 == len(report.manifest.routes)
    assert _listing(tmp_path) == ["bundle"]


def test_refuses_to_replace_something_that_is_not_a_bundle(tiny_model, tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(DsnetError, match="not a dsnet-export bundle; refusing"):
        build_bundle(model=tiny_model, out=precious, progress=False)
    assert (precious / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(DsnetError, match="not a directory"):
        build_bundle(model=tiny_model, out=a_file, progress=False)
