"""What the dispatcher is measured against, built from a bundle alone (numpy, onnx, onnxruntime).

* **monolithic**: one self-contained ONNX model of a route's whole subnet (image -> logits and,
  for routes that share the gate, gate logits), emitted by the exporter's own ``emit_engine``
  with ``part='full'`` and the bundle's stored tensors embedded (``EmbeddedBinding``), so it
  computes exactly what the gate engine + route engine compute, in one graph.
* **naive deployment**: one such standalone file per bundle route, each carrying its own copy of
  the pre-gate network and of the weights, all loaded as ONNX Runtime sessions.
* **masked ONNX**: the official full-width masking, see ``masking_onnx``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..arch import ArchSpec, EnginePart, Route
from ..errors import DsnetError
from ..graphs.emit import GATE_LOGITS, IMAGE, LOGITS, emit_engine
from ..graphs.graph import EmbeddedBinding, Graph
from ..graphs.masking import GATE_BIAS, emit_masked
from ..runtime.backends.ort.sessions import session_options
from ..runtime.bundle import Bundle
from ..runtime.manifest import RouteInfo
from ..runtime.weights import map_weights


@dataclass(frozen=True)
class BundleContext:
    """What the contenders need to know about a bundle."""

    bundle: Bundle
    spec: ArchSpec
    sources: dict[str, np.ndarray]   # the stored tensors (memory-mapped)
    input_hw: tuple[int, int]
    opset: int

    @classmethod
    def open(cls, bundle: Bundle) -> BundleContext:
        m = bundle.manifest
        spec = ArchSpec.from_dict(m.arch, where=f"{bundle.root}: manifest arch")
        gate = onnx.load(str(bundle.path(m.gate.file)), load_external_data=False)
        opset = next((o.version for o in gate.opset_import if o.domain in ("", "ai.onnx")), 17)
        return cls(bundle, spec, map_weights(bundle.weights_path), (m.input.shape[1], m.input.shape[2]), opset)

    def route(self, info: RouteInfo) -> Route:
        """The spec route a manifest route stands for (checked against its widths)."""
        route = info.spec_route(self.spec)
        if list(route.widths(self.spec)) != list(info.widths):
            raise DsnetError(f"{self.bundle.root}: route {info.name} has widths {info.widths}, the arch spec says "
                             f"{list(route.widths(self.spec))}")
        return route


def monolithic_model(ctx: BundleContext, info: RouteInfo) -> onnx.ModelProto:
    """The whole subnet of ``info`` as one self-contained ONNX model, weights from the bundle."""
    graph = Graph(f"monolithic_{info.index}", EmbeddedBinding(ctx.sources))
    return emit_engine(graph, ctx.spec, ctx.route(info), EnginePart.FULL, ctx.input_hw, ctx.opset)


def masked_model(ctx: BundleContext) -> onnx.ModelProto:
    return emit_masked(ctx.spec, ctx.sources, ctx.input_hw, ctx.opset)


def write_naive_deployment(ctx: BundleContext, directory: Path) -> list[Path]:
    """One standalone ONNX file per bundle route (each with its own pre-gate network and weights)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for info in ctx.bundle.manifest.routes:
        path = directory / f"route_{info.index}.onnx"
        onnx.save_model(monolithic_model(ctx, info), str(path))
        paths.append(path)
    return paths


def make_session(model: onnx.ModelProto | str | Path, threads: int | None, shared_pool: bool = False):
    """A CPU session of a contender that runs alone: the dispatcher's session options (threads, optimisation
    level) except that its workers keep ONNX Runtime's default spinning, the strongest setting for one
    session on its own (stopping the spin after each run costs a lone session a wake-up per call)."""
    import onnxruntime as ort

    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    options = session_options(threads, shared_pool=shared_pool, back_to_back=False)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class Monolithic:
    """A monolithic route model: ``run(x) -> logits``."""

    def __init__(self, session):
        self.session = session

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([LOGITS], {IMAGE: x})[0]


class MaskedOnnx:
    """The masked dynamic model: ``run(x, bias) -> (logits, gate_logits)``."""

    def __init__(self, session):
        self.session = session

    def __call__(self, x: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, gate_logits = self.session.run([LOGITS, GATE_LOGITS], {IMAGE: x, GATE_BIAS: bias})
        return logits, gate_logits
