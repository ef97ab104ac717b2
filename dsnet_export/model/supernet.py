"""The stateless slimmable supernet: every call names its route.

``Supernet.forward(x, route)`` runs the dense subnet that ``route`` selects; nothing about
widths is stored on modules between calls, so the model traces, exports and runs from
several threads without hidden coupling.  The computation is split at the gate the way the
exported engines are: ``pre_gate`` (stem .. the gated block's squeeze-excite) and
``post_gate`` (the rest at the route's width).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..arch import (
    ArchSpec,
    BlockSite,
    Cost,
    Route,
    RouteLike,
    gate_routes,
    gated_site,
    iter_blocks,
    resolve_route,
    route_cost,
)
from .blocks import Activation, SlimStage
from .layers import SlicedConv2d, SlicedLinear, SlimBatchNorm2d, activation


def stem_pool(x: torch.Tensor) -> torch.Tensor:
    """ResNet's 3x3, stride-2 max pool after the stem (``StemSpec.pool``)."""
    return F.max_pool2d(x, 3, 2, 1)


@dataclass(frozen=True)
class DynamicOutput:
    """Result of the per-sample dynamic forward."""

    logits: torch.Tensor
    gate_index: torch.Tensor  # [N] int64: the gate output (gate route) each sample took
    gate_logits: torch.Tensor


class DenseSubnet(nn.Module):
    """One route as a plain network of standard torch layers (see ``Supernet.extract``)."""

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], classifier: nn.Linear, route: Route):
        super().__init__()
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.classifier = classifier
        self.route_name = route.name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.classifier(x.mean((2, 3)))


class Supernet(nn.Module):
    """A DS-Net supernet built from an ``ArchSpec``; state-dict keys match the official code."""

    def __init__(self, spec: ArchSpec, *, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.spec = spec
        self.conv_stem = SlicedConv2d(spec.input.channels, spec.stem.channels[-1], spec.stem.kernel,
                                      spec.stem.stride, **factory)
        self.bn1 = SlimBatchNorm2d(spec.stem.channels, spec.bn_eps, **factory)
        self.blocks = nn.ModuleList(SlimStage(spec, i, **factory) for i in range(len(spec.stages)))
        self.classifier = SlicedLinear(spec.stages[-1].channels[-1], spec.num_classes, **factory)

    # -- routes --------------------------------------------------------------------------
    @property
    def routes(self) -> tuple[Route, ...]:
        """The gate's routes, indexed as the gate's outputs."""
        return gate_routes(self.spec)

    def route(self, route: RouteLike) -> Route:
        return resolve_route(self.spec, route)

    def cost(self, route: RouteLike, input_hw: tuple[int, int] | None = None) -> Cost:
        """MAdds and parameters of ``route`` (official counting rule)."""
        return route_cost(self.spec, route, input_hw)

    # -- the computation, split where the engines split -----------------------------------
    def block(self, site: BlockSite) -> nn.Module:
        """The module of one block (its state-dict prefix is ``site.prefix``)."""
        return self.get_submodule(site.prefix)

    @property
    def gate_block(self) -> nn.Module:
        """The block that holds the gate head."""
        return self.block(gated_site(self.spec))

    def pre_gate(self, x: torch.Tensor, route: RouteLike = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Stem .. gated block's first half.  Returns (features, the vector the gate head reads)."""
        widths = self.route(route).widths(self.spec)
        x = activation(self.spec.activation)(self.bn1(self.conv_stem(x, widths[0])))
        if self.spec.stem.pool:
            x = stem_pool(x)
        for site in iter_blocks(self.spec):
            if site.gated:
                return self.block(site).pre_gate(x)
            x = self.block(site)(x, widths[1 + site.stage_index])
        raise AssertionError("the gate stage is past the last stage")  # ArchSpec validation prevents this

    def post_gate(self, features: torch.Tensor, route: RouteLike) -> torch.Tensor:
        """The rest of the network at ``route``'s widths, up to the pooled classifier input."""
        widths = self.route(route).widths(self.spec)
        x = features
        for site in iter_blocks(self.spec):
            if site.after_gate:
                block, width = self.block(site), widths[1 + site.stage_index]
                x = block.post_gate(x, width) if site.gated else block(x, width)
        return x.mean((2, 3))

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(pooled)

    def pooled_features(self, x: torch.Tensor, route: RouteLike) -> torch.Tensor:
        """Global-pool output (the classifier's input) of ``route``."""
        return self.post_gate(self.pre_gate(x, route)[0], route)

    def forward(self, x: torch.Tensor, route: RouteLike) -> torch.Tensor:
        """Logits of the dense subnet ``route`` (gate index, 'largest', 'smallest', 'uniform:k')."""
        return self.classify(self.pooled_features(x, route))

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The gate's logits [N, num_routes] (no noise, no bias)."""
        return self.gate_block.gate_logits(self.pre_gate(x, 0)[1])

    def forward_dynamic(self, x: torch.Tensor, gate_bias: torch.Tensor | None = None) -> DynamicOutput:
        """Per-sample routing: gate argmax (no Gumbel noise), each sample through its own dense route."""
        features, hidden = self.pre_gate(x, 0)
        logits_gate = self.gate_block.gate_logits(hidden)
        scores = logits_gate if gate_bias is None else logits_gate + gate_bias.to(logits_gate)
        choice = scores.argmax(dim=1)
        logits = features.new_empty(x.shape[0], self.spec.num_classes)
        for g in choice.unique().tolist():
            members = (choice == g).nonzero().flatten()
            logits[members] = self.classify(self.post_gate(features[members], g))
        return DynamicOutput(logits, choice, logits_gate)

    # -- extraction ------------------------------------------------------------------------
    @torch.no_grad()
    def extract(self, route: RouteLike) -> DenseSubnet:
        """A plain dense network of exactly ``route``'s width: prefix slices of this supernet's
        tensors and that width's BatchNorm statistics, in eval mode."""
        r = self.route(route)
        widths = r.widths(self.spec)
        stem = nn.Sequential(self.conv_stem.to_dense(widths[0], self.spec.input.channels),
                             self.bn1.to_dense(widths[0]), Activation(self.spec.activation),
                             *([nn.MaxPool2d(3, 2, 1)] if self.spec.stem.pool else []))
        blocks: list[nn.Module] = []
        cin = widths[0]
        for site in iter_blocks(self.spec):
            cout = widths[1 + site.stage_index]
            blocks.append(self.block(site).to_dense(cin, cout))
            cin = cout
        return DenseSubnet(stem, blocks, self.classifier.to_dense(cin), r).eval()

