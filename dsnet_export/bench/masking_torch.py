"""The official DS-Net way of running the dynamic network ("masking"), in PyTorch.

This is how the official code executes dynamic inference: the layers before the gate run at
the gate's width; after the gate every layer runs at full width (``uniform:<last>``), each
sliced layer's output (depthwise, pointwise and squeeze-excite expand convolutions,
BatchNorms) is multiplied by a per-sample 0/1 mask that keeps the channels below the sample's
route width, and every BatchNorm normalises with ``onehot @ stacked per-width statistics``
(zero-padded), then the shared affine.  Its logits equal each sample's own route's logits.

By default two choices favour the masking baseline (so the speed-up against it is not
overstated): the zero-padded statistic stacks and the mask tables are built once, not on every
call as the official code does, and a mask is one multiplication.  ``official_ops=True`` does
what the official code does instead: it stacks the statistics on every BatchNorm call, and
masks as its ``apply_differentiable_gate_channel`` does (for each route width: replace NaNs by
zeros, then add the kept channels times the sample's one-hot weight into a zeroed tensor).

torch is imported lazily, inside the functions: importing this module costs nothing, and the
rest of the bench never needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..arch import ArchSpec, block_family, iter_blocks


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


@dataclass(frozen=True)
class MaskedOutput:
    logits: Any       # torch.Tensor [N, classes]
    gate_index: Any   # torch.Tensor [N] int64: the gate output (gate route) each sample took
    gate_logits: Any  # torch.Tensor [N, R]


class TorchMasking:
    """Dynamic inference of a ``Supernet`` by full-width compute and per-sample masks.

    Each block runs through its family's ``masked_torch`` part; the mask tables and the stacked
    statistics are made on the first call and kept (unless ``official_ops``)."""

    def __init__(self, net, *, official_ops: bool = False):
        self.net = net
        self.official_ops = official_ops
        self.spec: ArchSpec = net.spec
        self.choices = self.spec.gate.routes
        self._sites = [s for s in iter_blocks(self.spec) if s.after_gate]
        self._parts = [block_family(s.stage.block).part("masked_torch") for s in self._sites]
        self._mask_tables: dict[tuple[int, ...], Any] = {}
        self._bn_tables: dict[int, tuple] = {}

    def mask_table(self, channels: tuple[int, ...]):
        """[R, channels[-1]]: row r is 1 below gate route r's width."""
        if channels not in self._mask_tables:
            import torch

            p = next(self.net.parameters())
            table = torch.zeros(len(self.choices), channels[-1], dtype=p.dtype, device=p.device)
            for r, c in enumerate(self.choices):
                table[r, : channels[c]] = 1
            self._mask_tables[channels] = table
        return self._mask_tables[channels]

    def bn_table(self, bn, channels: tuple[int, ...]) -> tuple:
        """Zero-padded running mean/var of each gate route's width, stacked [R, full], and the affine."""
        if id(bn) not in self._bn_tables:
            import torch

            with torch.no_grad():
                full = channels[-1]
                p = bn.aux_bn[-1].weight
                mean = torch.zeros(len(self.choices), full, dtype=p.dtype, device=p.device)
                var = torch.zeros_like(mean)
                for r, c in enumerate(self.choices):
                    mean[r, : channels[c]] = bn.aux_bn[c].running_mean
                    var[r, : channels[c]] = bn.aux_bn[c].running_var
                affine = bn.aux_bn[-1]
                self._bn_tables[id(bn)] = (mean, var, affine.weight.detach()[:full], affine.bias.detach()[:full],
                                           affine.eps)
        return self._bn_tables[id(bn)]

    def __call__(self, x, gate_bias=None) -> MaskedOutput:
        import torch
        import torch.nn.functional as F

        net = self.net
        with torch.inference_mode():
            features, hidden = net.pre_gate(x, 0)
            gate_logits = net.gate_block.gate_logits(hidden)
            scores = gate_logits if gate_bias is None else gate_logits + torch.as_tensor(gate_bias).to(gate_logits)
            routes = scores.argmax(dim=1)
            onehot = F.one_hot(routes, len(self.choices)).to(features.dtype)
            ctx = _Context(self, onehot, {})
            x = features
            cin = features.shape[1]
            for site, masked in zip(self._sites, self._parts):
                cout = site.out_channels[-1]
                x = masked(net.block(site), site, x, cin, cout, ctx, site.gated)
                cin = cout
            pooled = x.mean((2, 3))
            logits = F.linear(pooled, net.classifier.weight[:, :cin], net.classifier.bias)
        return MaskedOutput(logits, routes, gate_logits)


@dataclass(frozen=True)
class _Context:
    """What a family's masked forward calls: ``conv``, ``mask``, ``batch_norm`` (one call's routing)."""

    owner: TorchMasking
    onehot: Any
    masks: dict  # this call's [N, C, 1, 1] masks, by width choices

    def mask(self, x, channels):
        """Zero the channels at or beyond each sample's route width."""
        if not self.owner.official_ops:
            if channels not in self.masks:
                self.masks[channels] = (self.onehot @ self.owner.mask_table(channels))[:, :, None, None]
            return x * self.masks[channels]
        import torch

        out = torch.zeros_like(x)
        for r, c in enumerate(self.owner.choices):
            w = channels[c]
            x = torch.where(torch.isnan(x), torch.zeros_like(x), x)
            out[:, :w] += x[:, :w] * self.onehot[:, r, None, None, None].expand_as(x[:, :w])
        return out

    def batch_norm(self, bn, x, channels):
        """Per-sample statistics, shared affine, then the mask (as the official DSBatchNorm2d)."""
        import torch

        mean, var, weight, bias, eps = self.owner.bn_table(bn, channels)
        if self.owner.official_ops:  # the official code stacks the per-width statistics on every call
            mean, var = torch.zeros_like(mean), torch.zeros_like(var)
            for r, c in enumerate(self.owner.choices):
                mean[r, : channels[c]] += bn.aux_bn[c].running_mean
                var[r, : channels[c]] += bn.aux_bn[c].running_var
        mean = (self.onehot @ mean)[:, :, None, None].expand_as(x)
        var = (self.onehot @ var)[:, :, None, None].expand_as(x)
        x = (x - mean) / torch.sqrt(var + eps)
        x = x * weight[None, :, None, None].expand_as(x) + bias[None, :, None, None].expand_as(x)
        return self.mask(x, channels)

    @staticmethod
    def conv(conv, x, cout: int, cin: int):
        """A sliced convolution's ``[cout, cin]`` prefix (the full width, in the masked network)."""
        import torch.nn.functional as F

        if conv.depthwise:
            weight, groups = conv.weight[:cin], cin
        else:
            weight, groups = conv.weight[:cout, :cin], 1
        bias = conv.bias[:cout] if conv.bias is not None else None
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, groups=groups)


def masked_forward(net, x, gate_bias=None, *, official_ops: bool = False) -> MaskedOutput:
    """One-off masked dynamic forward of ``net`` (a ``Supernet``); see ``TorchMasking``."""
    return TorchMasking(net, official_ops=official_ops)(x, gate_bias)
