"""Latency statistics shared by the benchmark suites."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Timings", "percentile"]


def percentile(samples: Sequence[float], share: float) -> float:
    """The sample at `share` (0 to 1) of the sorted samples, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@dataclass
class Timings:
    """Wall-clock samples of one measured operation, in milliseconds."""

    samples: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        """p50, p95, mean and the sample count."""
        return {
            "p50_ms": statistics.median(self.samples),
            "p95_ms": percentile(self.samples, 0.95),
            "mean_ms": statistics.fmean(self.samples),
            "samples": len(self.samples),
        }
