"""Accuracy vs MAdds of a dynamic network: per-route and dynamic numbers, a report and a plot.

Torch-free: ``python -m dsnet_export eval`` (ONNX bundles) and ``python -m training evaluate``
(torch checkpoints) both hand in numpy logits and share this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .optional import require


@dataclass(frozen=True)
class RoutePoint:
    name: str
    macs: int
    accuracy: float


@dataclass(frozen=True)
class Evaluation:
    samples: int
    routes: list[RoutePoint]       # each fixed route on every sample
    dynamic_accuracy: float
    dynamic_macs: float            # average over samples of the chosen route's MAdds
    histogram: list[int]           # samples per gate route
    gate_routes: list[str]

    def as_dict(self) -> dict:
        return {"samples": self.samples, "routes": [r.__dict__ for r in self.routes],
                "dynamic_accuracy": self.dynamic_accuracy, "dynamic_macs": self.dynamic_macs,
                "histogram": dict(zip(self.gate_routes, self.histogram))}


class Tally:
    """Counts correct predictions batch by batch, so a large dataset never holds all its logits."""

    def __init__(self, route_macs: dict[str, int], gate_routes: list[str], evaluated: list[str] | None = None):
        """``route_macs`` covers every route named; ``evaluated`` (default: all) are scored one by one."""
        self.route_macs, self.gate_routes = dict(route_macs), list(gate_routes)
        self.correct = dict.fromkeys(self.route_macs if evaluated is None else evaluated, 0)
        self.dynamic_correct, self.samples = 0, 0
        self.histogram = np.zeros(len(gate_routes), np.int64)

    def add(self, labels: np.ndarray, route_logits: dict[str, np.ndarray], dynamic_logits: np.ndarray,
            dynamic_choice: np.ndarray) -> None:
        """``dynamic_choice`` holds each sample's gate route index (into ``gate_routes``)."""
        for name, logits in route_logits.items():
            self.correct[name] += int(np.sum(logits.argmax(1) == labels))
        self.dynamic_correct += int(np.sum(dynamic_logits.argmax(1) == labels))
        self.histogram += np.bincount(dynamic_choice, minlength=len(self.gate_routes))
        self.samples += len(labels)

    def result(self) -> Evaluation:
        n = max(self.samples, 1)
        macs = np.array([self.route_macs[name] for name in self.gate_routes], np.float64)
        return Evaluation(self.samples, [RoutePoint(name, int(self.route_macs[name]), self.correct[name] / n)
                                         for name in self.correct],
                          self.dynamic_correct / n, float(macs @ self.histogram) / n, self.histogram.tolist(),
                          self.gate_routes)


def summarize(labels: np.ndarray, route_logits: dict[str, np.ndarray], route_macs: dict[str, int],
              dynamic_logits: np.ndarray, dynamic_choice: np.ndarray, gate_routes: list[str]) -> Evaluation:
    """``Tally`` over one batch holding everything."""
    tally = Tally(route_macs, gate_routes, list(route_logits))
    tally.add(labels, route_logits, dynamic_logits, dynamic_choice)
    return tally.result()


def format_evaluation(e: Evaluation) -> str:
    lines = [f"{'route':<12} {'MAdds':>9} {'accuracy':>9}"]
    lines += [f"{r.name:<12} {r.macs / 1e6:8.3f}M {r.accuracy:9.2%}" for r in e.routes]
    lines.append(f"{'dynamic':<12} {e.dynamic_macs / 1e6:8.3f}M {e.dynamic_accuracy:9.2%}   (average MAdds)")
    lines.append("route histogram: " + ", ".join(f"{name} {n} ({n / e.samples:.1%})"
                                                 for name, n in zip(e.gate_routes, e.histogram)))
    return "\n".join(lines)


def plot_evaluation(e: Evaluation, path, title: str = "") -> None:
    """Accuracy vs MAdds (each route, and the dynamic point; as DS-Net's Figure 1) and the route histogram."""
    matplotlib = require("matplotlib", "the accuracy-vs-MAdds plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hist) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 2]})
    fixed = sorted(e.routes, key=lambda r: r.macs)
    ax.plot([r.macs / 1e6 for r in fixed], [100 * r.accuracy for r in fixed], "o-", label="fixed-width routes")
    for r in fixed:
        ax.annotate(r.name, (r.macs / 1e6, 100 * r.accuracy), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.plot([e.dynamic_macs / 1e6], [100 * e.dynamic_accuracy], "*", markersize=16, color="tab:red",
            label="dynamic (gate)")
    ax.set_xlabel("MAdds (M)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or "accuracy vs MAdds")
    hist.bar(range(len(e.histogram)), e.histogram, color="tab:gray")
    hist.set_xticks(range(len(e.histogram)), e.gate_routes, rotation=30, fontsize=8)
    hist.set_ylabel("samples")
    hist.set_title("gate route histogram")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
