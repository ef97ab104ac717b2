"""What a stream of dispatcher calls did: route histogram, latency per route, effective MAdds, throughput."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..arch import RouteKind
from .inputs import warn_skipped
from .manifest import RouteInfo


@dataclass
class RunStats:
    routes: list[RouteInfo]
    samples: int = 0
    counts: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    latencies: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    macs: float = 0.0
    seconds: float = 0.0  # wall time of every call, summed
    skipped: int = 0      # unreadable inputs skipped (``skip``)

    def add(self, routes: np.ndarray, macs: np.ndarray, seconds: float) -> None:
        """One call: each sample's route and MAdds, and the call's wall time (charged to every route in it)."""
        for r in np.unique(routes).tolist():
            self.latencies[r].append(seconds)
        for r in routes.tolist():
            self.counts[r] += 1
        self.samples += len(routes)
        self.macs += float(np.sum(macs))
        self.seconds += seconds

    def skip(self, name: str, error: Exception) -> None:
        """An ``on_error`` callback (``iter_inputs``, ``open_source``): warn on stderr and count the input."""
        warn_skipped(name, error)
        self.skipped += 1

    @property
    def average_macs(self) -> float:
        return self.macs / self.samples if self.samples else 0.0

    @property
    def throughput(self) -> float:
        """Samples per second of dispatcher time (decoding and printing not included)."""
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    @property
    def widest_macs(self) -> int:
        return max(r.macs for r in self.routes if r.kind == RouteKind.GATE)

    def summary(self, noun: str = "frames") -> str:
        """Samples, average MAdds, one line per route (count, share, MAdds, mean call latency), throughput
        and skipped inputs; ``noun`` names the samples (frames, images, samples)."""
        lines = [f"{self.samples} {noun}; average {self.average_macs / 1e6:.2f}M MAdds = "
                 f"{self.average_macs / self.widest_macs:.1%} of the widest gate route ({self.widest_macs / 1e6:.2f}M)"]
        for r in self.routes:
            n = self.counts.get(r.index, 0)
            if n or r.kind == RouteKind.GATE:
                times = self.latencies.get(r.index)
                latency = f"{1e3 * float(np.mean(times)):.1f} ms" if times else "-"
                lines.append(f"  route {r.index} {r.name:<12} {n:6d} ({n / max(self.samples, 1):6.1%})  "
                             f"{r.macs / 1e6:8.2f}M MAdds  mean latency {latency}")
        lines.append(f"throughput {self.throughput:.1f} {noun}/s in the dispatcher; "
                     f"{self.skipped} unreadable input{'' if self.skipped == 1 else 's'} skipped")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """The summary's numbers, for JSON."""
        return {"samples": self.samples, "skipped": self.skipped, "average_macs": self.average_macs,
                "seconds": self.seconds, "throughput": self.throughput,
                "routes": {r.name: self.counts.get(r.index, 0) for r in self.routes
                           if self.counts.get(r.index, 0) or r.kind == RouteKind.GATE}}
