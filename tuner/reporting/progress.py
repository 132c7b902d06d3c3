"""How fast the study's front improved per kWh: absolute hypervolume against cumulative energy.

Trials are taken in the trials table's row order (the order they started) and charged
their recorded energy, failed and stopped ones included: they were paid for too. The
tuner's overhead is not spread over trials.

The hypervolume is absolute, measured from the study's fixed reference point
(:func:`tuner.pareto.reference_point`: ``config.reference_point``, else the budget in
kWh and, for an accuracy-like metric, 0), not rescaled to the study's own trials. It is
the area the front dominates in (metric gain over the reference) x (decades of kWh below
the reference, ``log10(reference kWh / kWh)``), so a 10x saving counts the same at any
scale, as it does for the knee and for ``bo``'s own hypervolume. Its unit is "metric x
decades". Rescaling per study, as this plot once did, made every study end near 1: a
random search with a poor front looked as good as a ``bo`` study with a better one.
Studies are comparable only when they share a reference point; set
``reference_point`` in their configs to compare studies whose default differs (a metric
outside [0, 1], or a different budget).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tuner.config import ENERGY_METRIC
from tuner.pareto import configured_reference, hypervolume, hypervolume_space, reference_point
from tuner.study.record import TrialStatus

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tuner.result import TuneResult


def hypervolume_progress(result: TuneResult) -> pd.DataFrame:
    """One row per trial: cumulative kWh, and the absolute hypervolume of the front so far.

    ``reference_metric`` and ``reference_kwh`` repeat the reference on every row, so the
    CSV says what its numbers are measured from.
    """
    trials = result.trials
    metric_ref, energy_ref = reference_point(result)
    spent = trials[ENERGY_METRIC].fillna(0).cumsum().to_numpy(float)
    ok = ((trials["status"] == TrialStatus.COMPLETED) & trials[result.metric].notna()
          & (trials[ENERGY_METRIC] > 0)).to_numpy()
    points = hypervolume_space(trials[result.metric].to_numpy(float), trials[ENERGY_METRIC].to_numpy(float),
                               result.mode, (metric_ref, energy_ref))
    volumes = [hypervolume(points[: i + 1][ok[: i + 1]], np.zeros(2)) if np.isfinite(metric_ref) else 0.0
               for i in range(len(trials))]
    return pd.DataFrame({
        "trial_id": trials["trial_id"].to_numpy(),
        "status": trials["status"].to_numpy(),
        "cumulative_kwh": spent,
        "hypervolume": volumes,
        "reference_metric": metric_ref,
        "reference_kwh": energy_ref,
    })


def progress_figure(result: TuneResult, progress: pd.DataFrame) -> Figure:
    """Hypervolume of the front so far (step line) against cumulative trial kWh."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.4), dpi=110)
    ax = fig.subplots()
    if progress.empty:
        ax.text(0.5, 0.5, "no trials", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return fig
    ax.step(progress["cumulative_kwh"], progress["hypervolume"], where="post", color="#1f77b4")
    for status, marker, color in ((TrialStatus.COMPLETED, "o", "#1f77b4"), (TrialStatus.FAILED, "x", "#d62728")):
        rows = progress[progress["status"] == status]
        ax.scatter(rows["cumulative_kwh"], rows["hypervolume"], marker=marker, color=color, s=18, label=status)
    stopped = progress[progress["status"].isin([TrialStatus.STOPPED, TrialStatus.STOPPED_BY_BUDGET, TrialStatus.INTERRUPTED])]
    ax.scatter(stopped["cumulative_kwh"], stopped["hypervolume"], marker="D", color="#7f7f7f", s=18, label="stopped")
    metric_ref, energy_ref = progress["reference_metric"].iloc[0], progress["reference_kwh"].iloc[0]
    configured = ["config" if value is not None else "default" for value in configured_reference(result)]
    ax.set_xlabel("cumulative trial energy (kWh)")
    ax.set_ylabel(f"hypervolume ({result.metric} x decades of kWh)")
    ax.set_ylim(bottom=0)
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    ax.set_title(f"{result.metric} x energy front: progress per kWh\n", fontsize=10)
    ax.text(0.5, 1.01, f"reference point: {result.metric} = {metric_ref:.4g} ({configured[0]}), "
            f"energy = {energy_ref:.4g} kWh ({configured[1]}); studies are comparable only with the same reference",
            transform=ax.transAxes, ha="center", va="bottom", fontsize=7, color="#444444")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
