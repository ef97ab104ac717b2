"""Non-finite weights and outputs (issue 13): ``build`` names the NaN/inf tensors before writing anything, with or
without its parity check, and a comparison with a non-finite output reads "non-finite output", not "nan"."""

import copy

import numpy as np
import pytest
import torch

from dsnet_export import DsnetError
from dsnet_export.cli import main
from dsnet_export.errors import CheckpointError
from dsnet_export.export import build_bundle
from dsnet_export.export.build import check_finite_weights
from dsnet_export.export.parity import NonFiniteAsNaN
from dsnet_export.runtime.compare import EngineDiff, ParityError, Tolerance, check_diffs, compare_engines, format_diffs


def _broken(model, keys, value=float("nan")):
    model = copy.deepcopy(model)
    state = dict(model.named_parameters()) | dict(model.named_buffers())
    with torch.no_grad():
        for key in keys:
            state[key].view(-1)[0] = value
    return model


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("check", [True, False])
def test_build_names_the_non_finite_tensor_and_writes_nothing(tiny_model, tmp_path, value, check):
    model = _broken(tiny_model, ["classifier.weight"], value)
    out = tmp_path / "bundle"
    with pytest.raises(CheckpointError, match=r"1 tensor: classifier\.weight \(1 of \d+ values\)"):
        build_bundle(model=model, out=out, progress=False, check=check, name="t")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary directory left behind either


def test_many_non_finite_tensors_are_counted(tiny_model, tmp_path):
    keys = [k for k, v in tiny_model.named_parameters() if v.dtype.is_floating_point][:8]
    model = _broken(tiny_model, keys)
    with pytest.raises(CheckpointError) as info:
        build_bundle(model=model, out=tmp_path / "b", progress=False, check=False, name="t")
    message = str(info.value)
    assert "in 8 tensors" in message and "and 3 more" in message and "\n" not in message


def test_only_stored_prefixes_are_checked():
    sources = {"w": np.array([1.0, 2.0, np.nan], np.float32), "b": np.array([np.inf], np.float32)}
    check_finite_weights(sources, {"w": (2,)})  # the NaN lies beyond the prefix the bundle stores
    with pytest.raises(CheckpointError, match=r"w \(1 of 3 values\)"):
        check_finite_weights(sources, {"w": (3,)})
    with pytest.raises(CheckpointError, match=r"2 tensors: b \(1 of 1 values\), w"):
        check_finite_weights(sources)


def test_build_command_with_nan_checkpoint_is_one_error_line(tiny_model, tmp_path, capsys):
    from dsnet_export import save_supernet

    checkpoint = save_supernet(_broken(tiny_model, ["conv_stem.weight"]), tmp_path / "nan.safetensors")
    out = tmp_path / "out"
    assert main(["build", "--checkpoint", str(checkpoint), "--out", str(out), "--no-check", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "nan > nan" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")], err
    assert "conv_stem.weight" in err or "NaN" in err or "non-finite" in err
    assert not out.exists()


class _Outputs:
    def __init__(self, gate, route):
        self.gate, self.route = gate, route

    def gate_logits(self, x):
        return self.gate

    def route_logits(self, route, x):
        return self.route


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("side", ["reference", "candidate"])
def test_non_finite_output_is_named_in_the_table(tiny_bundle, bad, side):
    manifest = tiny_bundle.manifest
    good = np.ones((2, 4), np.float32)
    broken = good.copy()
    broken[1, 2] = bad
    sides = {"reference": _Outputs(good, good), "candidate": _Outputs(good, good)}
    sides[side] = _Outputs(good, broken)
    rows = compare_engines(manifest, NonFiniteAsNaN(sides["reference"]), NonFiniteAsNaN(sides["candidate"]),
                           np.zeros((2, 1)), Tolerance(atol=1e-4))
    assert rows[0].ok and not any(r.ok for r in rows[1:])
    with pytest.raises(ParityError) as info:
        check_diffs("engines disagree", rows)
    text = str(info.value)
    assert text.count("non-finite output") == len(rows) - 1 and "nan > nan" not in text


def test_format_diffs_keeps_finite_rows():
    rows = [EngineDiff("gate.onnx", "gate", 1e-6, 1e-7, 1e-4), EngineDiff("r.onnx", "r", float("nan"), 0.0, 1e-4)]
    table = format_diffs(rows)
    assert "1.00e-06" in table and "non-finite output" in table
    assert isinstance(ParityError("x", rows), DsnetError)
