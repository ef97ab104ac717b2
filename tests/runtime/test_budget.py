"""The compute-budget knob: bias search, calibrate command, and the dispatcher picking the budget up."""

import json
import shutil

import numpy as np
import pytest

from dsnet_export import BundleError, DsnetError
from dsnet_export.cli import main
from dsnet_export.runtime import Dispatcher, load_bundle
from dsnet_export.runtime.budget import routing_macs, search_bias

MACS = np.array([100.0, 150.0, 200.0, 250.0])


def _logits(n=500, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


def _direction(macs):
    """The bias family's per-route penalty shape: bias = -lam * direction (0 for the cheapest, 1 for the widest)."""
    return (macs - macs.min()) / (macs.max() - macs.min())


def _every_average_of_the_family(logits, macs):
    """Every average MAdds some penalty ``lam`` gives, found without the bisection: each sample's route
    changes only where two of its lines ``logit_g - lam * direction_g`` cross, so one ``lam`` between
    each pair of neighbouring crossings (and one beyond each end) visits every routing of the family."""
    d, x = _direction(macs), logits.astype(np.float64)
    g, h = np.triu_indices(len(macs), 1)
    crossings = np.unique(((x[:, g] - x[:, h]) / (d[g] - d[h])).ravel())
    lams = np.concatenate([[crossings[0] - 1], (crossings[:-1] + crossings[1:]) / 2, [crossings[-1] + 1]])
    return np.concatenate([macs[np.argmax(x[None] - part[:, None, None] * d, axis=2)].mean(1)
                           for part in np.array_split(lams, 16)])


@pytest.mark.parametrize("target", [100.0, 120.0, 160.0, 175.0, 240.0, 250.0, 400.0])
def test_search_meets_the_target_as_closely_as_the_data_allow(target):
    logits = _logits()
    bias = search_bias(logits, MACS, target)
    achieved, _ = routing_macs(logits, MACS, bias)
    assert achieved <= target + 1e-9
    # The bias is one of the family, and its average the largest one of the family not above the target.
    lam = -float(bias[np.argmax(MACS)])
    np.testing.assert_allclose(bias, -lam * _direction(MACS), rtol=1e-6, atol=1e-6)
    averages = _every_average_of_the_family(logits, MACS)
    assert achieved == pytest.approx(averages[averages <= target + 1e-9].max(), abs=1e-9)
    # The tightest bias: any smaller penalty overshoots the target (unless every sample already takes the
    # widest route, where no smaller penalty can raise the average).
    if achieved < MACS.max():
        smaller = (-(lam - 1e-3) * _direction(MACS)).astype(np.float32)
        assert routing_macs(logits, MACS, smaller)[0] > target


def test_average_falls_as_the_target_falls():
    logits = _logits()
    averages = [routing_macs(logits, MACS, search_bias(logits, MACS, t))[0] for t in (240, 200, 160, 120)]
    assert averages == sorted(averages, reverse=True)


def test_target_below_the_cheapest_route_is_an_error():
    with pytest.raises(DsnetError, match="below the cheapest route"):
        search_bias(_logits(), MACS, 50.0)


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle.path, copy)
    return copy


def test_calibrate_command_saves_a_budget_the_dispatcher_uses(bundle_copy, mixed_batch, tmp_path, capsys):
    x, _ = mixed_batch
    np.save(tmp_path / "calib.npy", x)
    m = load_bundle(bundle_copy).manifest
    macs = [m.routes[k].macs for k in m.gate.routes]
    target = (macs[0] + macs[1]) / 2
    assert main(["calibrate", str(bundle_copy), "--data", str(tmp_path / "calib.npy"),
                 "--target-macs", str(int(target)), "--batch", "7"]) == 0
    out = capsys.readouterr().out
    assert "average" in out and "saved" in out
    budget = json.loads((bundle_copy / "budget.json").read_text())
    assert budget["achieved_macs"] <= target and budget["samples"] == 32
    assert sum(budget["histogram"]) == 32
    load_bundle(bundle_copy)  # the budget file is outside the hashed files
    with Dispatcher.load(bundle_copy, budget=True) as d:
        np.testing.assert_allclose(d.gate_bias, budget["bias"])
        assert d(x).macs.mean() == pytest.approx(budget["achieved_macs"])
    with Dispatcher.load(bundle_copy) as d:  # not applied unless asked
        assert not d.gate_bias.any()


def test_stale_or_missing_budget_is_rejected(bundle_copy, tmp_path, mixed_batch):
    with pytest.raises(BundleError, match="no budget file"):
        Dispatcher.load(bundle_copy, budget=True)
    np.save(tmp_path / "calib.npy", mixed_batch[0])
    assert main(["calibrate", str(bundle_copy), "--data", str(tmp_path / "calib.npy"), "--target-macs", "1G"]) == 0
    manifest = bundle_copy / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"name": "tiny"', '"name": "tiny2"'))
    with pytest.raises(BundleError, match="different build"):
        Dispatcher.load(bundle_copy, budget=True, verify=False)


def test_calibrate_argument_errors(bundle_copy, tmp_path, capsys):
    assert main(["calibrate", str(bundle_copy), "--data", str(tmp_path / "none.npy"), "--target-macs", "1M"]) == 1
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["calibrate", str(bundle_copy), "--data", "x", "--target-macs", "lots"])
