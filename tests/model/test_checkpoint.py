"""Checkpoint loading: official layout, project format, and every way a file can be wrong."""

import argparse
import os
import pickle

import pytest
import torch

from dsnet_export import CheckpointError, load_supernet, save_supernet
from dsnet_export.arch import get_arch
from dsnet_export.model import Supernet, read_metadata


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Supernet(get_arch("ds_mbnet_tiny")).eval()


def _official_file(tmp_path, model, **extra):
    path = tmp_path / "checkpoint-7.pth.tar"
    torch.save({"epoch": 7, "arch": model.spec.official_name or model.spec.name,
                "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "args": argparse.Namespace(model=model.spec.name, lr=0.08), "version": 2, **extra}, path)
    return path


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_official_layout_with_args_namespace_and_module_prefix(tmp_path, tiny):
    loaded = load_supernet(_official_file(tmp_path, tiny))
    assert loaded.spec == tiny.spec and _same(loaded, tiny) and not loaded.training


def test_ema_weights(tmp_path, tiny):
    shifted = {k: v + 1 if v.is_floating_point() else v for k, v in tiny.state_dict().items()}
    ema = load_supernet(_official_file(tmp_path, tiny, state_dict_ema=shifted), ema=True)
    assert torch.equal(ema.classifier.weight, tiny.classifier.weight + 1)
    (tmp_path / "plain").mkdir()
    with pytest.raises(CheckpointError, match="has no 'state_dict_ema'"):
        load_supernet(_official_file(tmp_path / "plain", tiny), ema=True)


def test_bare_state_dict_infers_architecture(tmp_path, tiny):
    path = tmp_path / "bare.pth"
    torch.save(tiny.state_dict(), path)
    assert load_supernet(path).spec.name == "ds_mbnet_tiny"


def test_project_format_round_trip(tmp_path, tiny):
    path = save_supernet(tiny, tmp_path / "model.safetensors", {"note": "unit test"})
    assert read_metadata(path)["note"] == "unit test"
    loaded = load_supernet(path, dtype=torch.float64)
    assert loaded.spec == tiny.spec and loaded.classifier.weight.dtype == torch.float64
    assert torch.allclose(loaded.classifier.weight.float(), tiny.classifier.weight)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_supernet(tmp_path / "nope.pth.tar")


@pytest.mark.parametrize("fmt", ["torch", "safetensors"])
def test_truncated_file(tmp_path, tiny, fmt):
    if fmt == "torch":
        path = _official_file(tmp_path, tiny)
    else:
        path = save_supernet(tiny, tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|not a readable"):
        load_supernet(path)


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("container", ["zip", "legacy-pickle"])
def test_pickle_that_carries_code_is_refused_not_run(tmp_path, tiny, container):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth.tar"
    payload = {"state_dict": tiny.state_dict(), "arch": "ds_mbnet_tiny", "hook": _RunsCode(marker)}
    if container == "zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError, match="refused to load"):
        load_supernet(path)
    assert not marker.exists()


def test_wrong_arch(tmp_path, tiny):
    path = _official_file(tmp_path, tiny)
    with pytest.raises(CheckpointError, match="checkpoint is for architecture 'ds_mbnet_tiny', but 'ds_mbnet'"):
        load_supernet(path, arch="ds_mbnet")
    with pytest.raises(CheckpointError, match="unknown architecture"):
        load_supernet(path, arch="resnet9000")


def test_unregistered_declared_arch(tmp_path, tiny):
    path = tmp_path / "c.pth.tar"
    torch.save({"state_dict": tiny.state_dict(), "arch": "some_future_net"}, path)
    with pytest.raises(CheckpointError, match="'some_future_net', which is not registered"):
        load_supernet(path)
    assert load_supernet(path, arch="ds_mbnet_tiny").spec.name == "ds_mbnet_tiny"


def test_missing_unexpected_and_misshaped_keys_are_all_named(tmp_path, tiny):
    state = dict(tiny.state_dict())
    del state["classifier.bias"]
    del state["blocks.0.first_block.conv_dw.weight"]
    state["blocks.9.extra"] = torch.zeros(1)
    state["conv_stem.weight"] = torch.zeros(5, 3, 3, 3)
    path = tmp_path / "bad.pth.tar"
    torch.save({"state_dict": state, "arch": "ds_mbnet_tiny"}, path)
    with pytest.raises(CheckpointError) as err:
        load_supernet(path)
    text = str(err.value)
    assert "missing keys (2): blocks.0.first_block.conv_dw.weight, classifier.bias" in text
    assert "unexpected keys (1): blocks.9.extra" in text
    assert "mis-shaped keys (1): conv_stem.weight (file [5, 3, 3, 3], model [12, 3, 3, 3])" in text


def test_non_strict_tolerates_missing_but_never_misshaped(tmp_path, tiny):
    state = dict(tiny.state_dict())
    del state["classifier.bias"]
    path = tmp_path / "partial.pth.tar"
    torch.save({"state_dict": state, "arch": "ds_mbnet_tiny"}, path)
    assert load_supernet(path, strict=False).spec.name == "ds_mbnet_tiny"
    state["conv_stem.weight"] = torch.zeros(5, 3, 3, 3)
    torch.save({"state_dict": state, "arch": "ds_mbnet_tiny"}, path)
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_supernet(path, strict=False)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="expected a state dict"):
        load_supernet(path)
    path.write_text("hello, I am not a checkpoint")
    with pytest.raises(CheckpointError):
        load_supernet(path)
