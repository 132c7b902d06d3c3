"""What a study returns: the trials table, its Pareto front and the energy totals."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tuner.config import ENERGY_METRIC
from tuner.pareto import pareto_mask
from tuner.study.record import TrialStatus

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from plotly.graph_objects import Figure as PlotlyFigure

    from tuner.config import StudyConfig


@dataclass
class TuneResult:
    """The outcome of :func:`tuner.tune`.

    ``trials`` has one row per trial: its parameters, metrics, ``energy_kwh``,
    ``energy_source``, ``status`` (``completed``, ``failed``, ``stopped_by_budget``,
    ``stopped``) and timing. ``total_energy_kwh`` is the trials' energy plus
    ``overhead_kwh``, the CPU energy the driver spent choosing trials (Ax's model fits
    and candidate generation), estimated from CPU time like the trials'.
    ``config`` is the study's config (the report needs its search space and prices);
    ``searcher`` the searcher that ran it (live studies only, for inspection: the report
    reads the trials table alone, so that a rebuilt report is the same).
    """

    trials: pd.DataFrame
    metric: str
    mode: str
    budget_kwh: float
    total_energy_kwh: float
    overhead_kwh: float
    param_names: list[str]
    mlflow_run_id: str | None = None
    tracking_uri: str | None = None
    output_dir: Path | None = None
    pue: float = 1.0
    finish_reason: str | None = None
    # set when ``max_consecutive_failures`` stopped the study: how many trials failed in a row
    consecutive_failures: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # CO2 (kg, PUE included) as run, and had every trial started at once at the study's
    # start; ``carbon`` adds the provider, the signal, the mean intensity and any fallback
    co2_kg: float | None = None
    co2_counterfactual_kg: float | None = None
    carbon: dict[str, Any] = field(default_factory=dict)
    config: StudyConfig | None = field(default=None, repr=False)
    searcher: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_state(
        cls, trials: pd.DataFrame, config: StudyConfig, state: Mapping[str, Any], *,
        output_dir: Path | None = None, searcher: Any = None,
    ) -> TuneResult:
        """The one way to build a result: a trials table, the study's config, and the totals
        kept in ``study.json`` (from a live study, its files, its MLflow run or the queue)."""
        overhead = float(state.get("overhead_kwh") or 0.0)
        total = state.get("total_energy_kwh")
        if total is None:
            total = (float(trials[ENERGY_METRIC].fillna(0).sum()) if ENERGY_METRIC in trials else 0.0) + overhead
        co2 = state.get("co2_kg")
        return cls(
            trials=trials, metric=config.metric, mode=config.mode, budget_kwh=config.budget_kwh,
            total_energy_kwh=float(total), overhead_kwh=overhead, param_names=list(config.search_space),
            mlflow_run_id=state.get("mlflow_run_id"), tracking_uri=state.get("tracking_uri"),
            output_dir=output_dir, pue=config.pue, finish_reason=state.get("finish_reason"),
            consecutive_failures=state.get("consecutive_failures"),
            extra=dict(state.get("extra") or {}),
            co2_kg=float(co2) if isinstance(co2, (int, float)) and math.isfinite(co2) else None,
            co2_counterfactual_kg=state.get("co2_counterfactual_kg"),
            carbon={k: v for k, v in state.items() if k.startswith(("co2_", "carbon_"))},
            config=config, searcher=searcher,
        )

    def totals(self) -> dict[str, Any]:
        """What :meth:`from_state` reads back: the energy and CO2 totals, why the study
        stopped and where it is tracked (the form ``study.json`` keeps them in)."""
        return {
            "total_energy_kwh": self.total_energy_kwh, "overhead_kwh": self.overhead_kwh,
            "co2_kg": self.co2_kg, "co2_counterfactual_kg": self.co2_counterfactual_kg,
            **{k: v for k, v in self.carbon.items() if isinstance(v, (str, int, float))},
            "finish_reason": self.finish_reason, "consecutive_failures": self.consecutive_failures,
            "mlflow_run_id": self.mlflow_run_id,
            "tracking_uri": self.tracking_uri, "extra": self.extra,
        }

    @property
    def interrupted(self) -> bool:
        """Whether a signal (Ctrl-C, SIGTERM) ended the study early; ``--resume`` goes on."""
        return bool(self.finish_reason and self.finish_reason.startswith("interrupted by "))

    @property
    def over_budget_kwh(self) -> float:
        """How far the total (tuner overhead included) went past ``budget_kwh``; 0 within it.

        The gate admits trials on their predicted upper band, but the first trials run
        before anything can be predicted, a trial can cost more than its band, and the
        tuner's own overhead counts too: a study can still end over its budget, and must
        say so rather than leave it to be noticed.
        """
        return max(0.0, self.total_energy_kwh - self.budget_kwh)

    @property
    def over_budget(self) -> bool:
        """Whether the study ended over its energy budget (see :attr:`over_budget_kwh`)."""
        return self.over_budget_kwh > 0

    def over_budget_line(self) -> str | None:
        """One line saying by how much the study went over its budget, or ``None`` if it did not."""
        if not self.over_budget:
            return None
        return (f"OVER BUDGET: {self.total_energy_kwh:.6g} kWh spent of a {self.budget_kwh:.6g} kWh budget "
                f"({100 * self.total_energy_kwh / self.budget_kwh:.1f} %, {self.over_budget_kwh:.3g} kWh over)")

    @property
    def completed(self) -> pd.DataFrame:
        if "status" not in self.trials:  # no trial ever started
            return self.trials
        return self.trials[self.trials["status"] == TrialStatus.COMPLETED]

    @property
    def pareto_front(self) -> pd.DataFrame:
        """Non-dominated completed trials, sorted by energy (cheapest first)."""
        done = self.completed
        if done.empty:
            return done
        mask = pareto_mask(done[self.metric].to_numpy(float), done[ENERGY_METRIC].to_numpy(float), self.mode)
        return done[mask].sort_values(ENERGY_METRIC).drop_duplicates([self.metric, ENERGY_METRIC])

    @property
    def facility_energy_kwh(self) -> float:
        """``total_energy_kwh`` x PUE: what the building drew, cooling included."""
        return self.total_energy_kwh * self.pue

    def knee(self) -> pd.Series | None:
        """The best trade-off on the front.

        Rule: normalise the metric and ``log10(energy_kwh)`` to [0, 1] over the front, and
        take the member closest (Euclidean) to the ideal corner (best metric, least
        energy). Energy is compared in log space because a 10x saving matters the same
        at any scale. ``None`` when no trial completed.
        """
        front = self.pareto_front
        if front.empty:
            return None
        if len(front) == 1:
            return front.iloc[0]
        metric = front[self.metric].to_numpy(float)
        goodness = metric if self.mode == "max" else -metric
        log_energy = np.log10(np.maximum(front[ENERGY_METRIC].to_numpy(float), 1e-300))
        distance = np.hypot(1 - _unit(goodness), _unit(log_energy))
        return front.iloc[int(np.argmin(distance))]

    def best(self, min_accuracy: float | None = None, max_energy_kwh: float | None = None) -> pd.Series | None:
        """The best completed trial under optional limits.

        With ``max_energy_kwh``: the best metric among trials that used at most that.
        With ``min_accuracy`` (any metric: "at least this good"): the cheapest trial that
        reaches it. With both: the best metric within both. With neither: the best
        metric overall. ``None`` if no trial qualifies.
        """
        done = self.completed
        metric = done[self.metric]
        if min_accuracy is not None:
            done = done[metric >= min_accuracy] if self.mode == "max" else done[metric <= min_accuracy]
        if max_energy_kwh is not None:
            done = done[done[ENERGY_METRIC] <= max_energy_kwh]
        if done.empty:
            return None
        if min_accuracy is not None and max_energy_kwh is None:
            return done.sort_values(ENERGY_METRIC).iloc[0]
        ordered = done.sort_values([self.metric, ENERGY_METRIC], ascending=[self.mode == "min", True])
        return ordered.iloc[0]

    def summary(self) -> str:
        """A short, printable account of the study."""
        counts = self.trials["status"].value_counts().to_dict() if "status" in self.trials else {}
        lines = []
        if self.completed.empty:  # first, so that it cannot be missed
            lines.append(f"NO TRIAL COMPLETED: the Pareto front is empty (stopped because: "
                         f"{self.finish_reason or 'no reason recorded'})")
        lines += [
            f"trials: {len(self.trials)} ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))})",
            f"energy: {self.total_energy_kwh:.6g} kWh of {self.budget_kwh:.6g} kWh budget "
            f"(trials {self.total_energy_kwh - self.overhead_kwh:.6g}, tuner overhead {self.overhead_kwh:.6g})",
        ]
        if self.over_budget:
            lines.append(str(self.over_budget_line()))
        sources = sorted(set(self.trials.get("energy_source", pd.Series(dtype=str)).dropna()))
        if sources:
            lines.append(f"energy source: {', '.join(sources)}")
        if self.co2_kg is not None:
            line = f"CO2: {self.co2_kg * 1000:.4g} g"
            mean = self.carbon.get("carbon_intensity_mean")
            if mean is not None and mean == mean:
                line += f" at {mean:.0f} gCO2/kWh"
            if self.co2_counterfactual_kg is not None:
                line += f"; {self.co2_counterfactual_kg * 1000:.4g} g had all trials started at once"
            line += f" ({self.carbon.get('carbon_provider', '?')}, {self.carbon.get('carbon_signal', '?')})"
            lines.append(line)
            if self.carbon.get("carbon_fallback"):
                lines.append(f"carbon fallback: {self.carbon['carbon_fallback']}")
        lines += self._carbon_schedule_lines()
        if self.finish_reason:
            lines.append(f"stopped because: {self.finish_reason}")
        return "\n".join(lines)

    def _carbon_schedule_lines(self) -> list[str]:
        """How long the carbon policy held launches or paused trials, and why."""
        carbon, lines = self.carbon, []
        policy = carbon.get("carbon_policy")
        if policy:
            waited, waits = float(carbon.get("carbon_waited_s") or 0.0), int(carbon.get("carbon_waits") or 0)
            if waited > 0 or waits:
                waits = max(waits, 1)  # a wait still under way counts
                line = (f"carbon wait: trial launches held for {duration_text(waited)} in {waits} "
                        f"wait{'s' if waits != 1 else ''} (policy {policy})")
                if carbon.get("carbon_wait_reason"):
                    line += f": {carbon['carbon_wait_reason']}"
            else:
                line = f"carbon wait: none (policy {policy})"
            if carbon.get("carbon_released"):
                line += f"; then {carbon['carbon_released']}"
            lines.append(line)
        pauses = int(carbon.get("carbon_pauses") or 0)
        if pauses:
            line = (f"carbon pauses: {pauses} pause{'s' if pauses != 1 else ''} of running trials, "
                    f"{duration_text(float(carbon.get('carbon_paused_s') or 0.0))} of trial time paused")
            if carbon.get("carbon_pause_released"):
                line += f"; then {carbon['carbon_pause_released']}"
            lines.append(line)
        return lines

    def plot_pareto(self) -> PlotlyFigure:
        """Interactive metric-vs-kWh plot of every trial, the front and the knee (plotly)."""
        from tuner.reporting.pareto import pareto_figure

        return pareto_figure(self)

    def plot_parallel(self) -> PlotlyFigure:
        """Parallel coordinates of the completed trials: parameters, metric and kWh (plotly).

        Raises ``ValueError`` with fewer than two completed trials."""
        from tuner.reporting.parallel import parallel_figure

        return parallel_figure(self)

    def plot_slices(self) -> PlotlyFigure:
        """Each parameter against the metric and against kWh, every trial by status (plotly).

        Raises ``ValueError`` with fewer than two completed trials."""
        from tuner.reporting.slices import slices_figure

        return slices_figure(self)

    def plot_sensitivity(self) -> Figure:
        """Sobol indices (95 % intervals, direction by colour) of each parameter for the metric
        and for energy, or a panel saying why an objective has none (matplotlib)."""
        from tuner.reporting.sensitivity import sensitivity, sensitivity_figure

        return sensitivity_figure(sensitivity(self), self.metric)

    def plot_budget_curve(self) -> Figure:
        """Expected best metric against energy budget and number of trials (matplotlib)."""
        from tuner.reporting.budget_curve import budget_curves, budget_figure

        return budget_figure(self, *budget_curves(self))

    def front_table(self) -> str:
        """The Pareto front as a plain-text table (knee marked with *)."""
        front = self.pareto_front
        if front.empty:
            return "(no completed trials: the Pareto front is empty)"
        knee = self.knee()
        cols = [self.metric, ENERGY_METRIC, *self.param_names]
        table = front[cols].copy()
        table.insert(0, "knee", ["*" if knee is not None and idx == knee.name else "" for idx in table.index])
        return table.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def duration_text(seconds: float) -> str:
    """A duration for a console line: ``45 s``, ``12 min``, ``1.5 h``, ``5.98 h``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.3g} h"


def _unit(values: np.ndarray) -> np.ndarray:
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)
