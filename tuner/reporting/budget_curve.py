"""Expected best metric at a given budget: Dodge et al. (2019), "Show Your Work".

By trials: the expected maximum of ``n`` draws with replacement from the ``N`` completed
trials' metric values, in closed form,

    E[max_n] = sum_i v_(i) [(i/N)^n - ((i-1)/N)^n],   v_(1) <= ... <= v_(N),

with variance ``sum_i v_(i)^2 w_i - E[max_n]^2`` from the same weights ``w_i``.

By kWh: the same experiment (random draws with replacement from the completed trials),
run against an energy budget ``b`` instead of a trial count. Trials are drawn one after
another; each one counts only if the cumulative kWh still fits in ``b``, and the first
that does not fit ends the sequence (its energy is spent, its result lost: that is what
a budget does to a real random search). Expensive-and-good and cheap-and-poor trials
keep their pairing. There is no closed form, so it is estimated by Monte Carlo over
``SEQUENCES`` seeded sequences, the same sequences at every budget.

A sequence that finished no trial within ``b`` has no result. It scores the *worst*
completed metric (the floor), and ``p_result`` says how many sequences had a result at
all. The curve is the mean over *all* sequences, so it is monotone by construction: a
larger budget fits a superset of each sequence's trials, so no sequence's best gets
worse, and the no-result floor is below every result. (Averaging only the sequences with a
result is not: a larger budget lets in sequences that finished one cheap, poor trial,
and that mean fell by up to 0.15 on random tables.) With the floor, the curve reads "at
worst you get the worst trial"; it is optimistic where ``p_result`` is low, so budgets
where fewer than ``MIN_RESULT_SHARE`` of the sequences have a result are dropped, from the
CSV as from the figure, and ``p_result`` is drawn beside the curve. The band is +/- one
standard deviation over sequences, clipped to the range of observed values, as in
Dodge et al.'s figures.

For a ``bo`` study this answers "what would random draws from the configurations this
study tried reach?", not what BO itself would reach; the study's own best-so-far is drawn
next to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tuner.config import ENERGY_METRIC
from tuner.study.record import TrialStatus

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tuner.result import TuneResult

SEQUENCES = 2000
BUDGET_POINTS = 40
MIN_RESULT_SHARE = 0.5


def expected_max(values: np.ndarray, n: np.ndarray | int, mode: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """Dodge et al.'s expected best (mean, variance) of ``n`` random draws from ``values``."""
    v = np.sort(np.asarray(values, float))
    if mode == "min":
        v = np.sort(-v)
    if len(v) == 0:
        raise ValueError("expected_max needs at least one value")
    n = np.atleast_1d(np.asarray(n, float))
    grid = np.arange(len(v) + 1) / len(v)
    weights = grid[None, 1:] ** n[:, None] - grid[None, :-1] ** n[:, None]
    mean = weights @ v
    var = np.maximum(weights @ v**2 - mean**2, 0.0)
    return (-mean if mode == "min" else mean), var


def curve_by_trials(metric: np.ndarray, mode: str = "max") -> pd.DataFrame:
    """Expected best metric after n = 1..N random trials, with its standard deviation."""
    n = np.arange(1, len(metric) + 1)
    mean, var = expected_max(metric, n, mode)
    return pd.DataFrame({"n_trials": n, "expected_best": mean, "std": np.sqrt(var)})


def curve_by_energy(metric: np.ndarray, energy: np.ndarray, budgets: np.ndarray, mode: str = "max",
                    sequences: int = SEQUENCES, seed: int = 0) -> pd.DataFrame:
    """Expected best metric of a random search stopped by each energy budget (Monte Carlo).

    One row per budget: ``expected_best`` (mean over every sequence, a sequence without
    a result scoring the worst completed metric; monotone in the budget), ``std``,
    ``p_result`` (share of sequences with a result) and ``mean_trials``.
    """
    metric = np.asarray(metric, float)
    energy = np.asarray(energy, float)
    if len(metric) == 0:
        raise ValueError("curve_by_energy needs at least one completed trial")
    budgets = np.asarray(budgets, float)
    # Long enough that (practically) every sequence runs past the largest budget.
    length = min(int(np.ceil(3 * budgets.max() / max(energy.mean(), 1e-300))) + 10, 2000)
    rng = np.random.default_rng(seed)
    draws = rng.integers(len(metric), size=(sequences, length))
    spent = np.cumsum(energy[draws], axis=1)
    signed = metric if mode == "max" else -metric
    better, floor = signed[draws], float(signed.min())  # the floor: the worst completed trial
    # Column 0: no trial finished yet, the floor; column k: best of the first k trials.
    best_so_far = np.hstack([np.full((sequences, 1), floor), np.maximum.accumulate(better, axis=1)])
    rows = []
    for budget in budgets:
        fitted = (spent <= budget * (1 + 1e-12)).sum(axis=1)  # cumulative energy is increasing
        best = best_so_far[np.arange(sequences), fitted]
        best = best if mode == "max" else -best
        rows.append({
            "budget_kwh": budget,
            "expected_best": float(best.mean()),
            "std": float(best.std()),
            "p_result": float((fitted > 0).mean()),
            "mean_trials": float(fitted.mean()),
        })
    return pd.DataFrame(rows)


def budget_curves(result: TuneResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both curves for a study: (by kWh, by number of trials). Empty when nothing completed."""
    done = result.completed.dropna(subset=[result.metric, ENERGY_METRIC])
    if done.empty:
        return pd.DataFrame(), pd.DataFrame()
    metric = done[result.metric].to_numpy(float)
    energy = done[ENERGY_METRIC].to_numpy(float)
    spent = float(result.trials[ENERGY_METRIC].sum())
    low = max(float(energy.min()), 1e-300)
    high = max(spent, float(energy.max()))
    budgets = np.geomspace(low, high, BUDGET_POINTS) if high > low else np.array([low])
    by_energy = curve_by_energy(metric, energy, budgets, result.mode)
    by_energy = by_energy[by_energy["p_result"] >= MIN_RESULT_SHARE].reset_index(drop=True)
    return by_energy, curve_by_trials(metric, result.mode)


def best_so_far(result: TuneResult) -> pd.DataFrame:
    """The study's own best metric against its cumulative trial energy (row order = start order)."""
    trials = result.trials
    spent = trials[ENERGY_METRIC].fillna(0).cumsum().to_numpy(float)
    ok = (trials["status"] == TrialStatus.COMPLETED).to_numpy() & trials[result.metric].notna().to_numpy()
    values = np.where(ok, trials[result.metric].to_numpy(float), np.nan)
    sign = 1.0 if result.mode == "max" else -1.0
    best = sign * np.fmax.accumulate(sign * values) if len(values) else values
    return pd.DataFrame({"cumulative_kwh": spent, "best": best})


def budget_figure(result: TuneResult, by_energy: pd.DataFrame, by_trials: pd.DataFrame) -> Figure:
    """Expected best metric vs kWh (with the study's own best-so-far) and vs number of trials."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, NullFormatter

    fig = Figure(figsize=(10, 4.2), dpi=110)
    left, right = fig.subplots(1, 2)
    if by_energy.empty:
        for ax in (left, right):
            ax.text(0.5, 0.5, "no completed trials", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        return fig
    observed = result.completed[result.metric].dropna()
    lowest, highest = float(observed.min()), float(observed.max())

    def band(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        # As in Dodge et al.'s plots: +/- 1 std, clipped to the range of observed values.
        return ((frame["expected_best"] - frame["std"]).clip(lowest, highest),
                (frame["expected_best"] + frame["std"]).clip(lowest, highest))

    left.plot(by_energy["budget_kwh"], by_energy["expected_best"], color="#1f77b4",
              label="expected best, random draws (no result = worst trial)")
    left.fill_between(by_energy["budget_kwh"], *band(by_energy), color="#1f77b4", alpha=0.2, label="+/- 1 std")
    own = best_so_far(result).dropna()
    if not own.empty:
        left.step(own["cumulative_kwh"], own["best"], where="post", color="#ff7f0e", label="this study, best so far")
    share = left.twinx()
    share.plot(by_energy["budget_kwh"], by_energy["p_result"], color="#7f7f7f", ls=":", lw=1,
               label="share of draws with a result (right axis)")
    share.set_ylim(0, 1.05)
    share.set_ylabel("share of draws with a result", fontsize=7, color="#7f7f7f")
    share.tick_params(axis="y", labelsize=7, colors="#7f7f7f")
    if len(by_energy) > 1 and by_energy["budget_kwh"].max() / by_energy["budget_kwh"].min() > 10:
        left.set_xscale("log")
        left.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short spans
    left.set_xlabel("energy budget (kWh of trials)")
    left.set_ylabel(f"expected best {result.metric}")
    left.set_title(f"budget curve by energy (Monte Carlo; budgets where >= {MIN_RESULT_SHARE:.0%} of draws have a result)",
                   fontsize=8)
    handles = left.get_legend_handles_labels()[0] + share.get_legend_handles_labels()[0]
    left.legend(handles=handles, fontsize=6.5, loc="lower right")
    right.plot(by_trials["n_trials"], by_trials["expected_best"], color="#2ca02c", marker=".")
    right.fill_between(by_trials["n_trials"], *band(by_trials), color="#2ca02c", alpha=0.2)
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel("number of trials")
    right.set_ylabel(f"expected best {result.metric}")
    right.set_title("budget curve by trials (closed form)")
    fig.suptitle("Expected best validation metric at a budget (Dodge et al., 2019), band = +/- 1 std",
                 fontsize=9)
    fig.tight_layout()
    return fig
