"""Known power traces for the fakes: watts at any time and the exact joules between two."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SineTrace:
    """``mean + amplitude * sin(2 pi t / period)`` watts, t in seconds since the fake started."""

    mean: float
    amplitude: float = 0.0
    period: float = 1.0

    @property
    def peak(self) -> float:
        return self.mean + abs(self.amplitude)

    def watts(self, t: float) -> float:
        return self.mean + self.amplitude * math.sin(2 * math.pi * t / self.period)

    def joules(self, t0: float, t1: float) -> float:
        """Exact integral of the trace from t0 to t1."""
        w = 2 * math.pi / self.period
        return self.mean * (t1 - t0) - self.amplitude / w * (math.cos(w * t1) - math.cos(w * t0))
