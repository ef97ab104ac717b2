"""Residual supernets load from every format a user has: the project's safetensors, a bare state dict, an
official-style ``.pth.tar`` (``{'state_dict', 'arch'}``, DataParallel's ``module.`` prefix) -- all in the official
naming (``blocks.{i}.first_block`` / ``residual_blocks.{j}``, per-width ``aux_bn.{k}``)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import randomise

from dsnet_export import load_supernet, save_supernet
from dsnet_export.arch import get_arch
from dsnet_export.errors import CheckpointError
from dsnet_export.model import Supernet


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return randomise(Supernet(get_arch("ds_resnet_digits")))


def _same(a: Supernet, b: Supernet) -> None:
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for route in range(4):
            torch.testing.assert_close(a(x, route), b(x, route), rtol=0, atol=0)


def test_safetensors_round_trip(resnet, tmp_path):
    loaded = load_supernet(save_supernet(resnet, tmp_path / "r.safetensors"))
    assert loaded.spec == resnet.spec
    _same(resnet, loaded)


def test_a_bare_state_dict_is_matched_to_its_architecture_by_its_keys(resnet, tmp_path):
    torch.save(resnet.state_dict(), tmp_path / "bare.pth")
    loaded = load_supernet(tmp_path / "bare.pth")
    assert loaded.spec.name == "ds_resnet_digits"
    _same(resnet, loaded)


def test_an_official_style_checkpoint_with_module_prefix(resnet, tmp_path):
    state = {f"module.{k}": v for k, v in resnet.state_dict().items()}
    torch.save({"state_dict": state, "arch": "ds_resnet_digits", "epoch": 3}, tmp_path / "official.pth.tar")
    _same(resnet, load_supernet(tmp_path / "official.pth.tar"))
    with pytest.raises(CheckpointError, match="'ds_resnet_digits', but 'ds_resnet18' was asked for"):
        load_supernet(tmp_path / "official.pth.tar", "ds_resnet18")


def test_the_keys_are_the_official_layout(resnet):
    keys = set(resnet.state_dict())
    assert {"conv_stem.weight", "bn1.aux_bn.0.running_mean", "classifier.weight",
            "blocks.1.first_block.conv1.weight", "blocks.1.first_block.bn2.aux_bn.3.weight",
            "blocks.1.first_block.downsample.0.weight", "blocks.1.first_block.downsample.1.aux_bn.0.running_var",
            "blocks.1.residual_blocks.0.conv2.weight", "blocks.1.first_block.gate.conv_reduce.weight",
            "blocks.1.first_block.gate.gate.0.weight"} <= keys
    assert "blocks.1.first_block.bn2.aux_bn.0.weight" not in keys  # the affine lives on the widest width only


def test_the_official_ds_shortcut_keys():
    """The official ``downsample`` Sequential, [avg pool] [1x1 conv]: the conv is ``.1`` after a pool, else ``.0``."""
    base = get_arch("ds_mbnet_tiny")
    stages = tuple(dataclasses.replace(s, residual=i != base.gate.stage) for i, s in enumerate(base.stages))
    keys = set(Supernet(dataclasses.replace(base, stages=stages), device="meta").state_dict())
    assert "blocks.0.first_block.downsample.0.weight" in keys    # stride 1, wider: the conv alone
    assert "blocks.1.first_block.downsample.1.weight" in keys    # stride 2, wider: pool, then conv
    assert not any(k.startswith("blocks.1.residual_blocks.0.downsample") for k in keys)  # identity
