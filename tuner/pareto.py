"""The Pareto front of (metric, kWh) points, and its hypervolume: one implementation,
used by the result, the report's progress plot and the study's progress line.

NumPy only, so that reading a front never imports torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from tuner.study.record import ENERGY_METRIC

if TYPE_CHECKING:
    from tuner.result import TuneResult


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


def hypervolume_space(metric: np.ndarray, energy: np.ndarray, mode: str,
                      reference: tuple[float, float]) -> np.ndarray:
    """(metric gain over the reference, decades of kWh below it): both maximised, the
    reference at the origin. Trials with no positive energy get ``nan`` (no log)."""
    metric_ref, energy_ref = reference
    gain = (np.asarray(metric, float) - metric_ref) * (1.0 if mode == "max" else -1.0)
    energy = np.asarray(energy, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        saving = np.where(energy > 0, np.log10(energy_ref / np.where(energy > 0, energy, 1.0)), np.nan)
    return np.column_stack([gain, saving])


def study_hypervolume(result: TuneResult) -> float:
    """The hypervolume of the study's completed trials from :func:`reference_point`, in the
    space of :func:`hypervolume_space`; ``nan`` when the reference has no metric yet."""
    metric_ref, energy_ref = reference_point(result)
    done = result.completed
    if not math.isfinite(metric_ref) or done.empty:
        return math.nan if not math.isfinite(metric_ref) else 0.0
    points = hypervolume_space(done[result.metric].to_numpy(float), done[ENERGY_METRIC].to_numpy(float),
                               result.mode, (metric_ref, energy_ref))
    return hypervolume(points[np.isfinite(points).all(axis=1)], np.zeros(2))


def reference_point(result: TuneResult) -> tuple[float, float]:
    """The (metric, kWh) point a study's hypervolume is measured from.

    A hypervolume is only comparable between studies measured from the same reference,
    so it is fixed by the study, not by its trials' spread: ``config.reference_point``
    when set (``{metric: ..., energy_kwh: ...}``, either may be ``None``), else

    - energy: the study's ``budget_kwh`` (no trial can spend more than the whole budget);
    - metric: ``0.0`` for a maximised metric whose every completed value lies in [0, 1]
      (accuracy-like: 0 is the worst it can be), otherwise the worst completed value,
      which does depend on the study: set ``reference_point.metric`` to compare studies.

    ``nan`` for a metric reference that has no default (a minimised metric and no
    completed trial).
    """
    metric_ref, energy_ref = configured_reference(result)
    if energy_ref is None:
        energy_ref = float(result.budget_kwh)
    if metric_ref is None:
        metric_ref = default_metric_reference(result)
    return float(metric_ref), float(energy_ref)


def default_metric_reference(result: TuneResult) -> float:
    """The metric half of :func:`reference_point` when the config does not set one."""
    done = result.completed
    values = done[result.metric].to_numpy(float) if result.metric in done else np.empty(0)
    values = values[np.isfinite(values)]
    if result.mode == "max" and bool(np.all((values >= 0) & (values <= 1))):
        return 0.0
    if len(values) == 0:
        return math.nan
    return float(values.min() if result.mode == "max" else values.max())


def configured_reference(result: TuneResult) -> tuple[float | None, float | None]:
    """``config.reference_point``'s (metric, energy_kwh), ``None`` where it sets none.

    Read with ``getattr``: the config field is optional, and a mapping or a model.
    """
    configured = getattr(result.config, "reference_point", None)

    def field(name: str) -> float | None:
        if configured is None:
            return None
        value = configured.get(name) if isinstance(configured, dict) else getattr(configured, name, None)
        return None if value is None else float(value)

    return field("metric"), field("energy_kwh")
