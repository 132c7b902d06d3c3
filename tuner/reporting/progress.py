"""How fast the study's front improved per kWh: hypervolume against cumulative energy.

Trials are taken in the trials table's row order (the order they started) and charged
their recorded energy, failed and stopped ones included: they were paid for too. The
tuner's overhead is not spread over trials. The hypervolume is computed (:func:`tuner.pareto.hypervolume`) in a normalised space: the metric scaled linearly and ``log10(kWh)``
(the same log scale as the knee) to [0, 1] over all completed trials, best = 1, with
the reference point 10 % beyond the worst of both; it is divided by its largest
possible value (1.1^2), so 1.0 would be one trial best in both objectives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tuner.config import ENERGY_METRIC
from tuner.pareto import hypervolume
from tuner.study.record import TrialStatus

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tuner.result import TuneResult

REFERENCE_MARGIN = 0.1


def hypervolume_progress(result: TuneResult) -> pd.DataFrame:
    """One row per trial: cumulative kWh, and the normalised hypervolume of the front so far."""
    trials = result.trials
    spent = trials[ENERGY_METRIC].fillna(0).cumsum().to_numpy(float)
    ok = ((trials["status"] == TrialStatus.COMPLETED) & trials[result.metric].notna()
          & (trials[ENERGY_METRIC] > 0)).to_numpy()
    points = np.full((len(trials), 2), np.nan)
    if ok.any():
        goodness = trials[result.metric].to_numpy(float) * (1 if result.mode == "max" else -1)
        saving = -np.log10(np.where(ok, trials[ENERGY_METRIC].to_numpy(float), 1.0))
        points[:, 0] = _unit(goodness, ok)
        points[:, 1] = _unit(saving, ok)
    volumes = [_hypervolume(points[: i + 1][ok[: i + 1]]) for i in range(len(trials))]
    return pd.DataFrame({
        "trial_id": trials["trial_id"].to_numpy(),
        "status": trials["status"].to_numpy(),
        "cumulative_kwh": spent,
        "hypervolume": volumes,
    })


def _unit(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    low, high = values[mask].min(), values[mask].max()
    return (values - low) / (high - low) if high > low else np.ones_like(values)


def _hypervolume(points: np.ndarray) -> float:
    reference = np.full(2, -REFERENCE_MARGIN)
    return hypervolume(points, reference) / (1 + REFERENCE_MARGIN) ** 2


def progress_figure(result: TuneResult, progress: pd.DataFrame) -> Figure:
    """Hypervolume of the front so far (step line) against cumulative trial kWh."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=110)
    ax = fig.subplots()
    if progress.empty:
        ax.text(0.5, 0.5, "no trials", ha="center", va="center", transform=ax.transAxes)
        return fig
    ax.step(progress["cumulative_kwh"], progress["hypervolume"], where="post", color="#1f77b4")
    for status, marker, color in ((TrialStatus.COMPLETED, "o", "#1f77b4"), (TrialStatus.FAILED, "x", "#d62728")):
        rows = progress[progress["status"] == status]
        ax.scatter(rows["cumulative_kwh"], rows["hypervolume"], marker=marker, color=color, s=18, label=status)
    stopped = progress[progress["status"].isin([TrialStatus.STOPPED, TrialStatus.STOPPED_BY_BUDGET, TrialStatus.INTERRUPTED])]
    ax.scatter(stopped["cumulative_kwh"], stopped["hypervolume"], marker="D", color="#7f7f7f", s=18, label="stopped")
    ax.set_xlabel("cumulative trial energy (kWh)")
    ax.set_ylabel("normalised hypervolume of the front so far")
    ax.set_ylim(0, 1.02)
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    ax.set_title(f"{result.metric} x energy front: progress per kWh")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
