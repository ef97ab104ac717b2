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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..arch import ArchSpec


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


@dataclass(frozen=True)
class MaskedOutput:
    logits: Any       # torch.Tensor [N, classes]
    routes: Any       # torch.Tensor [N] int64: gate route of each sample
    gate_logits: Any  # torch.Tensor [N, R]


def supernet_from_bundle(spec: ArchSpec, sources: Mapping[str, np.ndarray]):
    """A ``Supernet`` holding a bundle's stored tensors, zero-filled beyond the stored prefixes
    (running variances of widths the bundle does not store are 1).  Every exported route runs
    exactly as in the bundle; only full-width masking touches the filled parts, on masked
    channels."""
    import torch

    from ..model import Supernet

    net = Supernet(spec)
    state = {}
    for key, tensor in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = tensor
            continue
        full = torch.ones_like(tensor) if key.endswith("running_var") else torch.zeros_like(tensor)
        if key in sources:
            stored = torch.from_numpy(np.array(sources[key], dtype=np.float32))
            full[tuple(slice(0, s) for s in stored.shape)] = stored
        state[key] = full
    net.load_state_dict(state)
    return net.eval()


class TorchMasking:
    """Dynamic inference of a ``Supernet`` by full-width compute and per-sample masks."""

    def __init__(self, net, *, official_ops: bool = False):
        import torch

        self.net = net
        self.official_ops = official_ops
        self.spec: ArchSpec = net.spec
        spec = self.spec
        unknown = {s.block for s in spec.stages[spec.gate.stage:]} - set(_MASKED_BLOCKS)
        if unknown:
            raise ValueError(f"no masked torch block for block type(s) {sorted(unknown)}")
        self.choices = spec.gate.routes
        p = next(net.parameters())
        self._mask_tables: dict[tuple[int, ...], torch.Tensor] = {}
        self._bn_tables: dict[int, tuple] = {}
        with torch.no_grad():
            for i in range(spec.gate.stage, len(spec.stages)):
                for layer, block in enumerate(net.blocks[i].blocks()):
                    in_list = spec.stage_input_channels(i) if layer == 0 else spec.stages[i].channels
                    out_list = spec.stages[i].channels
                    after_gate = i == spec.gate.stage and layer == 0  # its first half is pre-gate
                    used = [(block.bn2, out_list)] + ([] if after_gate else [(block.bn1, in_list)])
                    for bn, channels in used:
                        self._bn_tables[id(bn)] = (bn, channels, *self._stack_stats(bn, channels, p))
                    for _, channels in used:
                        if channels not in self._mask_tables:
                            table = torch.zeros(len(self.choices), channels[-1], dtype=p.dtype, device=p.device)
                            for r, c in enumerate(self.choices):
                                table[r, : channels[c]] = 1
                            self._mask_tables[channels] = table

    def _stack_stats(self, bn, channels: tuple[int, ...], p):
        """Zero-padded running mean/var of each gate route's width, stacked [R, full]."""
        import torch

        full = channels[-1]
        mean = torch.zeros(len(self.choices), full, dtype=p.dtype, device=p.device)
        var = torch.zeros_like(mean)
        for r, c in enumerate(self.choices):
            stats = bn.aux_bn[c]
            mean[r, : channels[c]] = stats.running_mean
            var[r, : channels[c]] = stats.running_var
        affine = bn.aux_bn[-1]
        return mean, var, affine.weight.detach()[:full], affine.bias.detach()[:full], affine.eps

    def __call__(self, x, gate_bias=None) -> MaskedOutput:
        import torch
        import torch.nn.functional as F

        net, spec = self.net, self.spec
        gated = spec.gate.stage
        with torch.inference_mode():
            features, hidden = net.pre_gate(x, 0)
            gate_logits = net.blocks[gated].first_block.gate.gate_logits(hidden)
            scores = gate_logits if gate_bias is None else gate_logits + torch.as_tensor(gate_bias).to(gate_logits)
            routes = scores.argmax(dim=1)
            onehot = F.one_hot(routes, len(self.choices)).to(features.dtype)
            masks = {} if self.official_ops else {k: (onehot @ t)[:, :, None, None]
                                                  for k, t in self._mask_tables.items()}
            ctx = _Context(onehot, masks, self._bn_tables, self.official_ops, self.choices)
            x = features
            cin = features.shape[1]
            for i in range(gated, len(spec.stages)):
                stage = spec.stages[i]
                cout = stage.channels[-1]
                for layer, block in enumerate(net.blocks[i].blocks()):
                    in_list = spec.stage_input_channels(i) if layer == 0 else stage.channels
                    x = _MASKED_BLOCKS[stage.block](block, x, cin, cout, in_list, stage.channels, ctx,
                                                    i == gated and layer == 0)
                    cin = cout
            pooled = x.mean((2, 3))
            logits = F.linear(pooled, net.classifier.weight[:, :cin], net.classifier.bias)
        return MaskedOutput(logits, routes, gate_logits)


@dataclass(frozen=True)
class _Context:
    onehot: Any
    masks: dict
    bn_tables: dict
    official: bool
    choices: tuple[int, ...]

    def mask(self, x, channels):
        """Zero the channels at or beyond each sample's route width."""
        if not self.official:
            return x * self.masks[channels]
        import torch

        out = torch.zeros_like(x)
        for r, c in enumerate(self.choices):
            w = channels[c]
            x = torch.where(torch.isnan(x), torch.zeros_like(x), x)
            out[:, :w] += x[:, :w] * self.onehot[:, r, None, None, None].expand_as(x[:, :w])
        return out

    def batch_norm(self, bn, x, channels):
        """Per-sample statistics, shared affine, then the mask (as the official DSBatchNorm2d)."""
        import torch

        _, _, mean, var, weight, bias, eps = self.bn_tables[id(bn)]
        if self.official:  # the official code stacks the per-width statistics on every call
            mean, var = torch.zeros_like(mean), torch.zeros_like(var)
            for r, c in enumerate(self.choices):
                mean[r, : channels[c]] += bn.aux_bn[c].running_mean
                var[r, : channels[c]] += bn.aux_bn[c].running_var
        mean = (self.onehot @ mean)[:, :, None, None].expand_as(x)
        var = (self.onehot @ var)[:, :, None, None].expand_as(x)
        x = (x - mean) / torch.sqrt(var + eps)
        x = x * weight[None, :, None, None].expand_as(x) + bias[None, :, None, None].expand_as(x)
        return self.mask(x, channels)


def _conv(conv, x, cout: int, cin: int):
    import torch.nn.functional as F

    if conv.depthwise:
        weight, groups = conv.weight[:cin], cin
    else:
        weight, groups = conv.weight[:cout, :cin], 1
    bias = conv.bias[:cout] if conv.bias is not None else None
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, groups=groups)


def _masked_ds(block, x, cin: int, cout: int, in_list, out_list, ctx: _Context, after_gate: bool):
    """dw -> mask -> BN -> swish -> SE (expand masked) | pw -> mask -> BN -> swish, at full width."""
    import torch
    import torch.nn.functional as F

    from ..model.layers import swish

    if not after_gate:
        x = ctx.mask(_conv(block.conv_dw, x, cin, cin), in_list)
        x = swish(ctx.batch_norm(block.bn1, x, in_list))
        se = block.gate
        hidden = F.relu(_conv(se.conv_reduce, x.mean((2, 3), keepdim=True), se.conv_reduce.weight.shape[0], cin))
        attention = ctx.mask(_conv(se.conv_expand, hidden, cin, hidden.shape[1]), in_list)
        x = x * torch.sigmoid(attention)
    x = ctx.mask(_conv(block.conv_pw, x, cout, cin), out_list)
    return swish(ctx.batch_norm(block.bn2, x, out_list))


_MASKED_BLOCKS = {"ds": _masked_ds}


def masked_forward(net, x, gate_bias=None, *, official_ops: bool = False) -> MaskedOutput:
    """One-off masked dynamic forward of ``net`` (a ``Supernet``); see ``TorchMasking``."""
    return TorchMasking(net, official_ops=official_ops)(x, gate_bias)
