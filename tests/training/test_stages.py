"""Stage I (IEB), BN recalibration, Stage II (SGS), resume and evaluate, on small data."""

import dataclasses
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dsnet_export import load_supernet
from dsnet_export.arch import get_arch
from dsnet_export.errors import DsnetError
from dsnet_export.model import Supernet
from training.__main__ import main
from training.config import GateConfig, SupernetConfig
from training.ieb import Ema, soft_cross_entropy, step_losses
from training.loops import train_gate, train_supernet
from training.recalibrate import recalibrate_bn
from training.routes import random_routes
from training.sgs import gate_parameters, sgs_targets

TINY = "ds_mbnet_tiny"


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Supernet(get_arch(TINY)).train()


def _batch(data, n=16):
    x, y = data.normalized("val")
    return torch.from_numpy(x[:n]), torch.from_numpy(y[:n])


def test_ieb_targets(model, small_digits):
    x, y = _batch(small_digits)
    ema = Ema(model, 0.5)
    with torch.no_grad():  # make the EMA teacher differ from the live model
        for p in ema.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    config = SupernetConfig(arch=TINY, random_routes=2)
    losses = step_losses(model, ema, x, y, config, random.Random(3))
    routes = random_routes(model.spec, 2, random.Random(3))
    assert set(losses) == {"largest", "smallest", *routes}
    with torch.no_grad():
        teacher = F.softmax(ema.model(x, "largest"), 1)
        ensemble = torch.stack([teacher, *(F.softmax(ema.model(x, r), 1) for r in routes)]).mean(0)
        assert torch.allclose(losses[routes[0]], soft_cross_entropy(model(x, routes[0]), teacher), atol=1e-6)
        assert torch.allclose(losses["smallest"], soft_cross_entropy(model(x, "smallest"), ensemble), atol=1e-6)
        assert torch.allclose(losses["largest"], F.cross_entropy(model(x, "largest"), y, label_smoothing=0.1))


def test_without_ieb_narrow_routes_distil_from_the_live_widest_detached(model, small_digits):
    x, y = _batch(small_digits)
    config = SupernetConfig(arch=TINY, ieb=False)
    losses = step_losses(model, Ema(model, 0.5), x, y, config, random.Random(0))
    with torch.no_grad():
        teacher = F.softmax(model(x, "largest"), 1)
        assert torch.allclose(losses["smallest"], soft_cross_entropy(model(x, "smallest"), teacher), atol=1e-6)
    losses["smallest"].backward()
    # The smallest route uses the stem's first 8 filters; the teacher is detached, so the others get nothing.
    assert model.conv_stem.weight.grad[8:].abs().sum() == 0 and model.conv_stem.weight.grad[:8].abs().sum() > 0


def test_ema_update(model):
    ema = Ema(model, 0.9)
    before = ema.model.classifier.weight.clone()
    with torch.no_grad():
        model.classifier.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.model.classifier.weight, 0.9 * before + 0.1 * model.classifier.weight)


def test_recalibration_changes_exactly_the_statistics(model, small_digits):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recalibrate_bn(model, small_digits, batches=2, batch_size=32, seed=0)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("running_" in k or "num_batches_tracked" in k for k in changed)
    assert "blocks.2.first_block.bn2.aux_bn.4.running_mean" in changed  # every uniform width
    assert all(m.aux_bn[-1].momentum == 0.1 for m in model.modules() if hasattr(m, "aux_bn"))


def test_sgs_targets(model, small_digits):
    x, y = _batch(small_digits, 32)
    model.eval()
    with torch.no_grad():
        correct = model(x, "smallest").argmax(1) == y
    targets = sgs_targets(model, x, y)
    assert targets[correct].eq(0).all() and targets[~correct].eq(3).all()


def test_supernet_then_gate_then_evaluate(small_digits, tmp_path, capsys):
    out = tmp_path / "supernet.safetensors"
    config = SupernetConfig(arch=TINY, epochs=2, batch_size=32, recalibration_batches=2, warmup_epochs=1)
    train_supernet(config, small_digits, out, progress=False, log=lambda s: None)
    supernet = load_supernet(out)
    gated_out = tmp_path / "dsnet.safetensors"
    gated = train_gate(GateConfig(epochs=2, batch_size=32, lr=0.05), small_digits, out, gated_out, progress=False,
                       log=lambda s: None)
    before, after = supernet.state_dict(), load_supernet(gated_out).state_dict()
    head = "blocks.2.first_block.gate.gate.0.weight"
    assert not torch.equal(before[head], after[head])
    assert all(torch.equal(before[k], after[k]) for k in before if k != head), "the supernet must stay frozen"
    assert all(p.requires_grad for p in gate_parameters(gated))
    png = tmp_path / "eval.png"
    assert main(["evaluate", "--checkpoint", str(gated_out), "--split", "test", "--png", str(png)]) == 0
    text = capsys.readouterr().out
    assert "dynamic" in text and "route histogram" in text and "gate accuracy" in text
    assert png.stat().st_size > 10_000


def test_resume_continues_from_the_saved_epoch(small_digits, tmp_path):
    config = SupernetConfig(arch=TINY, epochs=3, batch_size=32, recalibration_batches=1, warmup_epochs=1)
    straight = train_supernet(config, small_digits, tmp_path / "a.safetensors", progress=False, log=lambda s: None)

    class Stop(Exception):
        pass

    def stop_after_first_epoch(line):
        if line.startswith("supernet epoch 1/"):
            raise Stop

    with pytest.raises(Stop):
        train_supernet(config, small_digits, tmp_path / "b.safetensors", progress=False, log=stop_after_first_epoch)
    lines = []
    resumed = train_supernet(config, small_digits, tmp_path / "b.safetensors", resume=True, progress=False,
                             log=lines.append)
    assert lines[0].startswith("resuming") and "after epoch 1" in lines[0]
    assert not any(line.startswith("supernet epoch 1/") for line in lines)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def test_config_flags_reach_the_config(tmp_path, small_digits, monkeypatch):
    seen = {}

    def fake(config, data, out, **kwargs):
        seen["config"] = config
        return Supernet(get_arch(TINY)).eval()

    monkeypatch.setattr("training.loops.train_supernet", fake)
    monkeypatch.setattr("dsnet_export.datasets.load_dataset", lambda *a, **k: small_digits)
    assert main(["supernet", "--out", str(tmp_path / "x.safetensors"), "--arch", TINY, "--epochs", "7",
                 "--no-ieb", "--ema-decay", "0.9", "--no-flip", "--crop-scale", "0.5"]) == 0
    assert dataclasses.asdict(seen["config"]) | {} == {**dataclasses.asdict(SupernetConfig()), "arch": TINY,
                                                       "epochs": 7, "ieb": False, "ema_decay": 0.9, "flip": False,
                                                       "crop_scale": 0.5}


def test_export_digits(tmp_path):
    assert main(["export-digits", str(tmp_path / "d"), "--split", "val"]) == 0
    files = list((tmp_path / "d").rglob("*.png"))
    assert len(files) > 200 and {p.parent.name for p in files} == {str(i) for i in range(10)}
    assert np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(files[0])).shape == (32, 32, 3)


def test_seed_does_not_move_the_split(tmp_path, small_digits, monkeypatch):
    """--seed changes initial weights and sampling only; the split has its own --split-seed."""
    seeds = []

    def fake_load(name, preprocessing, *, split_seed, **kwargs):
        seeds.append(split_seed)
        return small_digits

    monkeypatch.setattr("training.loops.train_supernet",
                        lambda config, data, out, **kw: Supernet(get_arch(TINY)).eval())
    monkeypatch.setattr("training.data.load_dataset", fake_load)
    for extra in (["--seed", "5"], ["--seed", "5", "--split-seed", "4"]):
        assert main(["supernet", "--out", str(tmp_path / "x.safetensors"), "--arch", TINY, "--quiet", *extra]) == 0
    assert seeds == [0, 4]


def test_stage_one_can_start_from_a_checkpoint(small_digits, tmp_path):
    """--init: every tensor that fits is copied (here all of them, from the shipped digits DS-ResNet), and one
    epoch at a tiny learning rate keeps the model close to where it started."""
    from dsnet_export.export.build import shipped_weights
    from training.loops import initialise_from

    shipped = shipped_weights("ds_resnet_digits")
    logs = []
    model = Supernet(load_supernet(shipped).spec)
    initialise_from(model, shipped, logs.append)
    assert logs == [f"initial weights from {shipped}: {len(model.state_dict())} of {len(model.state_dict())} tensors"]
    torch.testing.assert_close(model.state_dict(), load_supernet(shipped).state_dict())
    with pytest.raises(DsnetError, match="--init .*: no such checkpoint file"):
        SupernetConfig(arch="ds_resnet_digits", init=str(tmp_path / "missing.pth")).validate()
