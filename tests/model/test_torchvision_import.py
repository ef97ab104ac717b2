"""torchvision ResNet weights into ``ds_resnet18`` / ``ds_resnet50``: route 3 computes what ResNet computes.

Two references: a small plain-torch ResNet written here in torchvision's layout and key names (always runs), and
torchvision's own ``resnet18()`` / ``resnet50()`` loaded with the same random weights (skipped without
torchvision).  Weights and BatchNorm statistics are random, so a wrong slice, name or width shows in the logits.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types

import pytest
import torch
from torch import nn

from dsnet_export.arch import get_arch
from dsnet_export.errors import CheckpointError
from dsnet_export.model import Supernet
from dsnet_export.model.layers import SlimBatchNorm2d
from dsnet_export.model.torchvision_import import from_torchvision_resnet, looks_like_torchvision_resnet

TOL = 1e-4


# -- an independent ResNet in torchvision's layout ----------------------------------------------------------------
class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.downsample = _projection(cin, width, stride)

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        out = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # v1.5: the stride on the 3x3
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU()
        self.downsample = _projection(cin, out, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(out)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _projection(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class _ResNet(nn.Module):
    """ResNet-18 (``_Basic``, [2, 2, 2, 2]) or ResNet-50 (``_Bottleneck``, [3, 4, 6, 3]), torchvision's names."""

    def __init__(self, block, layers, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, width, 2 if i > 0 and j == 0 else 1))
                cin = width * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


ARCHS = {"ds_resnet18": (_Basic, (2, 2, 2, 2), "resnet18"), "ds_resnet50": (_Bottleneck, (3, 4, 6, 3), "resnet50")}


def _randomised(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and BatchNorm statistics, scaled so activations stay O(1) through 16 blocks; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(module, nn.BatchNorm2d):
                last = name.endswith(("bn2", "bn3", "downsample.1")) and name.startswith("layer")
                c = module.num_features
                module.weight.copy_(torch.rand(c, generator=g) * (0.3 if last else 1.0) + (0.1 if last else 0.5))
                module.bias.copy_(torch.randn(c, generator=g) * 0.1)
                module.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                module.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                module.num_batches_tracked.fill_(int(torch.randint(1, 10_000, (), generator=g)))
            elif isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * module.in_features ** -0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module", params=sorted(ARCHS))
def case(request, x):
    """(arch name, the reference's state dict, the imported supernet, its route-3 logits, the reference's)."""
    block, layers, _ = ARCHS[request.param]
    reference = _randomised(_ResNet(block, layers), seed=7)
    state = reference.state_dict()
    net = Supernet(get_arch(request.param))
    net.load_state_dict(from_torchvision_resnet(state, net.spec))
    with torch.no_grad():
        expected, route3 = reference(x), net.eval()(x, 3)
    return request.param, state, net, route3, expected


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert expected.abs().max() > 0.1  # the comparison means something
    torch.testing.assert_close(actual, expected, rtol=TOL, atol=TOL)


def test_the_reference_layout_is_recognised(case):
    _, state, _, _, _ = case
    assert looks_like_torchvision_resnet(state)
    assert not looks_like_torchvision_resnet(Supernet(get_arch("ds_resnet18")).state_dict())


def test_route_3_equals_the_resnet(case):
    _, _, net, route3, expected = case
    _close(route3, expected)
    assert net.route("largest").choices == net.route(3).choices  # the same subnet, no need to run it twice


def test_narrow_routes_run_on_prefix_statistics(case, x):
    _, state, net, _, _ = case
    with torch.no_grad():
        out = net(x, 0)
    assert out.shape == (2, 1000) and torch.isfinite(out).all()
    seen = 0
    for name, module in net.named_modules():
        if not isinstance(module, SlimBatchNorm2d):
            continue
        tv = _tv_name(name)
        for k, width in enumerate(module.channels):
            bn = module.aux_bn[k]
            assert torch.equal(bn.running_mean, state[f"{tv}.running_mean"][:width]), (name, k)
            assert torch.equal(bn.running_var, state[f"{tv}.running_var"][:width]), (name, k)
            assert bn.num_batches_tracked == state[f"{tv}.num_batches_tracked"]
        assert module.channels[-1] == state[f"{tv}.running_mean"].shape[0]  # torchvision's width: exact copy
        assert torch.equal(module.aux_bn[-1].weight, state[f"{tv}.weight"])
        seen += len(module.channels) > 1
    assert seen > 10


def test_the_gate_keeps_its_initialisation(case):
    name, state, _, _, _ = case
    spec = get_arch(name)
    torch.manual_seed(3)
    imported = from_torchvision_resnet(state, spec)
    torch.manual_seed(3)
    fresh = Supernet(spec).state_dict()
    gate = [k for k in fresh if ".gate." in k]
    assert gate and all(torch.equal(imported[k], fresh[k]) for k in gate)
    assert imported.keys() == fresh.keys()


def _tv_name(name: str) -> str:
    """Supernet module name -> torchvision's (independent of the product's own mapping)."""
    parts = name.split(".")
    if parts[0] != "blocks":
        return name
    stage, rest = int(parts[1]), parts[2:]
    block = 0 if rest[0] == "first_block" else int(rest[1]) + 1
    tail = rest[1:] if rest[0] == "first_block" else rest[2:]
    return ".".join([f"layer{stage + 1}", str(block), *tail])


# -- hostile state dicts ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def r18():
    return _randomised(_ResNet(_Basic, (2, 2, 2, 2)), seed=11).state_dict()


def _refused(state, arch: str = "ds_resnet18") -> str:
    with pytest.raises(CheckpointError) as info:
        from_torchvision_resnet(state, get_arch(arch))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_missing_block_is_refused(r18):
    state = {k: v for k, v in r18.items() if not k.startswith("layer4.1.")}
    message = _refused(state)
    assert "layer4.1.conv1.weight" in message and "[2, 2, 2, 1]" in message


def test_a_missing_layer_is_refused(r18):
    message = _refused({k: v for k, v in r18.items() if not k.startswith("layer4.")})
    assert "3 stages" in message and "layer4.0.conv1.weight" in message


def test_an_extra_key_is_refused(r18):
    message = _refused({**r18, "layer1.0.conv3.weight": torch.zeros(64, 64, 1, 1)})
    assert "layer1.0.conv3.weight has no place in 'ds_resnet18'" in message


def test_resnet50_weights_do_not_go_into_resnet18(r18):
    with torch.device("meta"):  # shapes only; to_empty allocates without the slow init
        r50 = _ResNet(_Bottleneck, (3, 4, 6, 3)).to_empty(device="cpu").state_dict()
    message = _refused(r50)
    assert "[3, 4, 6, 3]" in message and "layer1.0.conv3.weight" in message


def test_a_too_wide_tensor_is_refused(r18):
    message = _refused({**r18, "layer2.0.conv1.weight": torch.zeros(160, 64, 3, 3)})
    assert "layer2.0.conv1.weight is wider than the supernet: file [160, 64, 3, 3]" in message
    assert "[128, 64, 3, 3]" in message


def test_a_different_kernel_or_class_count_is_refused(r18):
    message = _refused({**r18, "conv1.weight": torch.zeros(64, 3, 3, 3), "fc.bias": torch.zeros(10)})
    assert "conv1.weight has shape [64, 3, 3, 3]" in message and "fc.bias has shape [10]" in message


def test_an_integer_tensor_is_refused(r18):
    message = _refused({**r18, "layer1.0.bn1.running_var": torch.ones(64, dtype=torch.int64)})
    assert "layer1.0.bn1.running_var is int64, not a floating-point tensor" in message


def test_every_problem_is_in_one_message_first_eight_listed(r18):
    state = {**r18, **{f"extra{i}.weight": torch.zeros(1) for i in range(12)}}
    state["layer1.0.bn1.weight"] = torch.ones(64, dtype=torch.int32)
    message = _refused(state)
    assert message.count("has no place") == 8 and "... and 5 more" in message


def test_a_narrower_network_goes_into_the_prefix(r18):
    """Narrower torchvision tensors fill the supernet tensor's prefix (a thinner ResNet, say)."""
    state = dict(r18)
    state["fc.weight"] = r18["fc.weight"][:, :384].clone()
    imported = from_torchvision_resnet(state, get_arch("ds_resnet18"))
    assert torch.equal(imported["classifier.weight"][:, :384], state["fc.weight"])


def test_a_non_resnet_spec_is_refused(r18):
    assert "is not a ResNet" in _refused(r18, "ds_mbnet_tiny")


def test_torchvision_key_check():
    assert not looks_like_torchvision_resnet(["fc.weight", "conv1.weight"])
    assert looks_like_torchvision_resnet(["fc.weight", "conv1.weight", "layer1.0.conv1.weight", "fc.bias"])


# -- torchvision itself -------------------------------------------------------------------------------------------
def _torchvision_resnet_module() -> types.ModuleType:
    """``torchvision.models.resnet``, imported without torchvision's compiled operators if they cannot load.

    Why: the PyPI torchvision wheel for Linux is a CUDA build; its ``_C.so`` links ``libtorch_cuda.so``, which a
    CPU-only torch (``torch==2.13.0+cpu`` here) does not ship, so ``import torchvision`` dies in
    ``torchvision/__init__.py`` -> ``_meta_registrations`` with "operator torchvision::nms does not exist".
    ResNet needs none of those operators: ``torchvision/models/resnet.py`` is plain ``torch.nn``.  So when the
    normal import fails, stand-in package modules for ``torchvision`` and ``torchvision.models`` whose ``__path__``
    is the installed package's directory let Python import ``torchvision.models.resnet`` (and the pure-Python
    modules it imports: ``_api``, ``_meta``, ``_utils``, ``transforms``) from the installed files, without
    running either ``__init__.py``.  The ResNet code under test is torchvision's own, byte for byte.  The stand-ins
    are removed from ``sys.modules`` afterwards, so nothing else in the session sees a partial torchvision.
    """
    found = importlib.util.find_spec("torchvision")
    if found is None:
        pytest.skip("torchvision is not installed (pip install --no-deps torchvision)")
    try:
        from torchvision.models import resnet
        return resnet
    except (ImportError, OSError, RuntimeError):
        pass
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]  # what the failed import left half-done
    before = set(sys.modules)
    root = list(found.submodule_search_locations or [])
    try:
        for name, path in (("torchvision", root), ("torchvision.models", [f"{p}/models" for p in root])):
            stand_in = types.ModuleType(name)
            stand_in.__path__ = path
            stand_in.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            stand_in.__spec__.submodule_search_locations = path
            sys.modules[name] = stand_in
        return importlib.import_module("torchvision.models.resnet")
    except ImportError as exc:
        pytest.skip(f"torchvision.models.resnet does not import here ({exc})")
    finally:
        for name in [n for n in sys.modules if n not in before and n.split(".")[0] == "torchvision"]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def tv_resnet():
    return _torchvision_resnet_module()


def test_torchvision_resnet_equals_route_3(case, x, tv_resnet):
    name, state, _, route3, expected = case
    with torch.device("meta"):  # skip torchvision's init: every tensor is replaced
        model = getattr(tv_resnet, ARCHS[name][2])()
    model.load_state_dict(state, assign=True)  # strict: the reference's layout is torchvision's
    with torch.no_grad():
        actual = model.eval()(x)
    _close(route3, actual)
    _close(actual, expected)


def test_load_supernet_and_build_take_a_saved_torchvision_file(r18, tmp_path):
    """What a user does: torch.save(resnet18().state_dict(), path), then load (or build) it as ds_resnet18."""
    from dsnet_export import load_supernet

    path = tmp_path / "resnet18.pth"
    torch.save(r18, path)
    with pytest.raises(CheckpointError, match="torchvision ResNet weights; pass arch="):
        load_supernet(path)
    net = load_supernet(path, "ds_resnet18")
    reference = _ResNet(_Basic, (2, 2, 2, 2))
    reference.load_state_dict(r18)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _close(net(x, 3), reference.eval()(x))
    with pytest.raises(CheckpointError, match="resnet18.pth: .*no place|resnet18.pth: .*refus|resnet18.pth"):
        load_supernet(path, "ds_resnet50")


def test_build_exports_torchvision_weights_and_the_bundle_computes_the_resnet(r18, tmp_path):
    """build --checkpoint resnet18.pth --arch ds_resnet18, then the bundle's route 3 through the ONNX Runtime
    dispatcher = the ResNet the weights came from."""
    import subprocess
    import sys

    from dsnet_export.runtime import Dispatcher

    weights = tmp_path / "resnet18.pth"
    torch.save(r18, weights)
    done = subprocess.run([sys.executable, "-m", "dsnet_export", "build", "--checkpoint", str(weights), "--arch",
                           "ds_resnet18", "--out", str(tmp_path / "bundle"), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    missing = subprocess.run([sys.executable, "-m", "dsnet_export", "build", "--checkpoint",
                              str(tmp_path / "resnet18.pth"), "--out", str(tmp_path / "b2"), "--quiet"],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "torchvision ResNet weights; pass --arch" in missing.stderr
    reference = _ResNet(_Basic, (2, 2, 2, 2))
    reference.load_state_dict(r18)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    with Dispatcher.load(tmp_path / "bundle") as dispatcher, torch.no_grad():
        _close(torch.from_numpy(dispatcher.run(x.numpy(), 3).logits), reference.eval()(x))
