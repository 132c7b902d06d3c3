"""The Pareto front of (metric, kWh) points, and its hypervolume: one implementation,
used by the result, the report's progress plot and the study's progress line.

NumPy only, so that reading a front never imports torch.
"""

from __future__ import annotations

import numpy as np


def pareto_mask(metric: np.ndarray, energy: np.ndarray, mode: str = "max") -> np.ndarray:
    """True for points no other point dominates (better or equal in both, better in one)."""
    better = np.asarray(metric, dtype=float) if mode == "max" else -np.asarray(metric, dtype=float)
    energy = np.asarray(energy, dtype=float)
    keep = np.ones(len(better), dtype=bool)
    for i in range(len(better)):
        dominated_by = (better >= better[i]) & (energy <= energy[i]) & (
            (better > better[i]) | (energy < energy[i])
        )
        keep[i] = not dominated_by.any()
    return keep


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """The area dominated by 2-D ``points`` (both objectives maximised) above ``reference``.

    Points not strictly better than the reference in both objectives add nothing.
    """
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    points = points[(points[:, 0] > reference[0]) & (points[:, 1] > reference[1])]
    if len(points) == 0:
        return 0.0
    front = points[pareto_mask(points[:, 0], -points[:, 1], "max")]
    front = front[np.argsort(-front[:, 0])]  # best first objective first, so the second rises
    area, floor = 0.0, float(reference[1])
    for x, y in front:
        if y > floor:
            area += (x - reference[0]) * (y - floor)
            floor = y
    return float(area)
