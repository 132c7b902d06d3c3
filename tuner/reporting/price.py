"""The price tag: what the study cost in kWh, CO2, money and device-hours, and what a grid would have.

Money and CO2 are charged on the facility energy (total kWh x PUE), which is what the
building drew. CO2 comes from measured figures when the study has them (a
``TuneResult.co2_kg`` total, else a ``co2_kg`` column on every trial, with the overhead at
the fallback intensity) and otherwise from the fallback intensity: ``report.co2_kg_per_kwh``
when set, else the static carbon provider's world average (:func:`fallback_intensity`);
``co2_source`` says which.

The grid estimate asks the study's energy model (:class:`~tuner.search.energy_model.EnergyModel`,
the one the budget gate admits trials with: a Gaussian process on ``log(kWh)`` with a
linear trend, fitted on the completed trials) for joint draws of every grid point's energy
at the study's ``grid_resolution``, and sums each draw: the estimate is the mean of those
totals, its 90 % interval their 5th-95th percentiles. The draws are widened as the
model's upper band is (calibrated on its leave-one-out errors), so the interval covers
what the model cannot know about points near the trials. Far from them no interval is
honest: when more than half of the grid's points lie outside what the trials sampled
(beyond the sampled span of a parameter, or at an unordered choice no trial took), or the
interval would span more than a factor :data:`MAX_INTERVAL_RATIO`, the estimate says it
cannot estimate, and why, instead.

The log-linear ridge fit this replaced was low in 9 of 9 studies on the Zeus traces (by
6-29 %), the true grid outside its bootstrap interval every time: an additive model
extrapolated from where the search sampled. Measured again by ``benchmarks/budget_hold.py
--grid-estimate`` (docs/results.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tuner.config import ENERGY_METRIC, Choice, ReportSettings
from tuner.space import SpaceEncoder

if TYPE_CHECKING:
    from tuner.result import TuneResult

DRAWS = 400
"""Joint draws of the grid's energies the estimate and its interval are taken from."""
MAX_JOINT_POINTS = 2000
"""Grid points drawn jointly (a covariance of this size per draw); a larger grid is sampled."""
MAX_OUTSIDE_SHARE = 0.5
"""More grid points than this share outside what the trials sampled, and the estimate refuses:
on the Zeus traces, every estimate whose interval missed the true grid had more."""
OUTSIDE_MARGIN = 0.1
"""How far past the sampled span of a parameter (as a share of its whole range) a grid point
may lie and still count as inside: the grid's levels include the bounds, which uniform
draws approach but almost never reach (36 random trials leave a gap of about 1/37 of the
range at each end), so without a margin nearly every grid point counted as outside."""
MAX_INTERVAL_RATIO = 10.0
"""Wider than this factor (high over low), the interval says nothing: the estimate refuses."""


@dataclass
class GridEstimate:
    """Estimated energy of the full grid over the study's space."""

    points: int
    resolution: int
    kwh: float
    kwh_low: float
    kwh_high: float
    fit_r2: float
    trials_used: int
    method: str


@dataclass
class PriceTag:
    """One study's bill. Energy figures are in kWh; money in ``currency``."""

    n_trials: int
    trials_by_status: dict[str, int]
    trials_kwh: float
    overhead_kwh: float
    total_kwh: float
    pue: float
    facility_kwh: float
    energy_sources: list[str]
    co2_kg: float
    co2_source: str
    price_per_kwh: float
    currency: str
    cost: float
    device_hours: dict[str, float]
    grid: GridEstimate | None = None
    grid_note: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) rows for a table."""
        by_status = ", ".join(f"{n} {s}" for s, n in sorted(self.trials_by_status.items()))
        rows = [
            ("trials", f"{self.n_trials} ({by_status})"),
            ("energy, trials", f"{self.trials_kwh:.6g} kWh"),
            ("energy, tuner overhead", f"{self.overhead_kwh:.6g} kWh"),
            ("energy, total", f"{self.total_kwh:.6g} kWh"),
            (f"energy, facility (PUE {self.pue:g})", f"{self.facility_kwh:.6g} kWh"),
            ("energy source", ", ".join(self.energy_sources) or "unknown"),
            ("CO2", f"{self.co2_kg:.6g} kg ({self.co2_source})"),
            ("cost", f"{self.cost:.6g} {self.currency} at {self.price_per_kwh:g} {self.currency}/kWh"),
        ]
        rows += [(f"device-hours, {k}", f"{v:.4g}") for k, v in self.device_hours.items()]
        if self.grid is not None:
            g = self.grid
            share = self.total_kwh / g.kwh if g.kwh > 0 else math.nan
            rows.append((f"full grid estimate ({g.points} points at resolution {g.resolution})",
                         f"{g.kwh:.6g} kWh (90 % interval {g.kwh_low:.3g}-{g.kwh_high:.3g}); "
                         f"this study used {share:.1%} of it; "
                         f"{g.kwh * self.pue * self.price_per_kwh:.4g} {self.currency}"))
        elif self.grid_note:
            rows.append(("full grid estimate", self.grid_note))
        return rows


def price_tag(result: TuneResult) -> PriceTag:
    """The study's price tag from its trials table, totals and config."""
    cfg = result.config
    settings = cfg.report if cfg is not None else ReportSettings()
    trials = result.trials
    trials_kwh = float(trials[ENERGY_METRIC].fillna(0).sum())
    facility = result.total_energy_kwh * result.pue
    co2, co2_source = _co2(result, settings, trials)
    duration_h = float(trials["duration_s"].fillna(0).sum()) / 3600 if "duration_s" in trials else math.nan
    devices = {"trial wall-clock hours": duration_h}
    if cfg is not None:
        devices["CPU core-hours reserved"] = duration_h * cfg.resources_per_trial.cpu
        if cfg.resources_per_trial.gpu:
            devices["GPU-hours reserved"] = duration_h * cfg.resources_per_trial.gpu
    grid, grid_note = None, ""
    try:
        grid = grid_estimate(result)
    except ValueError as exc:
        grid_note = str(exc)
    sources = sorted({str(s) for s in trials.get("energy_source", pd.Series(dtype=str)).dropna()})
    return PriceTag(
        n_trials=len(trials),
        trials_by_status={str(k): int(v) for k, v in trials["status"].value_counts().items()},
        trials_kwh=trials_kwh,
        overhead_kwh=result.overhead_kwh,
        total_kwh=result.total_energy_kwh,
        pue=result.pue,
        facility_kwh=facility,
        energy_sources=sources,
        co2_kg=co2,
        co2_source=co2_source,
        price_per_kwh=settings.price_per_kwh,
        currency=settings.currency,
        cost=facility * settings.price_per_kwh,
        device_hours=devices,
        grid=grid,
        grid_note=grid_note,
    )


def fallback_intensity(settings: ReportSettings) -> tuple[float, str]:
    """(kg CO2/kWh, where it comes from) for energy with no measured CO2.

    ``report.co2_kg_per_kwh`` when set, else the static carbon provider's world average:
    one figure for the report and the carbon accounting, kept in ``tuner.carbon.static``.
    """
    if settings.co2_kg_per_kwh is not None:
        return float(settings.co2_kg_per_kwh), "configured intensity"
    from tuner.carbon.static import annual_intensity

    g_per_kwh, source, _ = annual_intensity(None)
    return g_per_kwh / 1000.0, source


def _co2(result: TuneResult, settings: ReportSettings, trials: pd.DataFrame) -> tuple[float, str]:
    measured_total = result.co2_kg
    if measured_total is not None and math.isfinite(float(measured_total)):
        provider = result.carbon.get("carbon_provider", "the study's provider")
        return float(measured_total), f"the study's carbon accounting ({provider})"
    intensity, source = fallback_intensity(settings)
    if "co2_kg" in trials and trials["co2_kg"].notna().all() and len(trials):
        overhead = result.overhead_kwh * result.pue * intensity
        return (float(trials["co2_kg"].sum()) + overhead,
                f"trials' co2_kg, plus the overhead at {intensity:g} kg/kWh ({source})")
    return (result.total_energy_kwh * result.pue * intensity,
            f"facility kWh x {intensity:g} kg CO2/kWh ({source}; not measured)")


def grid_estimate(result: TuneResult) -> GridEstimate:
    """What the full grid would have cost, from the study's energy model (see module doc).

    Raises ``ValueError`` with the reason when it cannot say: too few completed trials,
    or trials that leave the grid so unexplored that its 90 % interval spans more than a
    factor :data:`MAX_INTERVAL_RATIO`.
    """
    from tuner.search.baselines import grid_levels
    from tuner.search.energy_model import MIN_TRIALS, EnergyModel

    if result.config is None:
        raise ValueError("needs the study's search space (TuneResult.config is None)")
    space = result.config.tunable
    resolution = result.config.grid_resolution
    done = result.completed[result.completed[ENERGY_METRIC] > 0]
    if len(done) < MIN_TRIALS:
        raise ValueError(f"not estimated: {len(done)} completed trials with energy, need at least {MIN_TRIALS}")
    names = list(space)
    model = EnergyModel(space)
    model.fit(done[names].to_dict("records"), done[ENERGY_METRIC].to_numpy(float).tolist())
    levels = [grid_levels(space[name], resolution) for name in names]
    points = math.prod(len(values) for values in levels)
    if points <= MAX_JOINT_POINTS:
        indices = np.arange(points)
        where = f"all {points} grid points"
    else:  # a seeded random sample of the grid stands for it, its sum scaled up
        indices = np.sort(np.random.default_rng(0).choice(points, MAX_JOINT_POINTS, replace=False))
        where = f"a random {MAX_JOINT_POINTS} of the {points} grid points (sum scaled up)"
    grid = [{name: _plain(levels[i][j]) for i, (name, j) in
             enumerate(zip(names, np.unravel_index(index, [len(v) for v in levels]), strict=True))}
            for index in indices]
    outside = _outside_sampled(space, done, pd.DataFrame(grid))
    if outside.mean() > MAX_OUTSIDE_SHARE:
        ranges = ", ".join(_sampled_range(space, name, done) for name in names)
        raise ValueError(
            f"cannot estimate: {outside.mean():.0%} of the grid's points lie outside what the {len(done)} "
            f"completed trials sampled ({ranges}); the model would extrapolate far from its data")
    totals = np.exp(model.sample_log_kwh(grid, DRAWS, seed=0)).sum(axis=1) * (points / len(grid))
    kwh = float(np.mean(totals))
    low, high = (float(v) for v in np.percentile(totals, [5, 95]))
    if high > MAX_INTERVAL_RATIO * low:
        raise ValueError(
            f"cannot estimate: the {len(done)} completed trials leave too much of the grid unexplored "
            f"(its 90 % interval would be {low:.3g}-{high:.3g} kWh, a factor {high / low:.0f} wide)")
    method = (f"Gaussian process on log(kWh) (linear trend plus Matern) over {len(done)} completed trials "
              f"(leave-one-out R^2 {model.loo_r2:.2f}), {DRAWS} joint draws summed over {where} at "
              f"resolution {resolution}; the estimate is their mean, the 90 % interval their 5th-95th "
              "percentiles, widened as the energy model's calibrated band is")
    return GridEstimate(points, resolution, kwh, low, high, model.loo_r2, len(done), method)


def _outside_sampled(space: dict[str, Any], done: pd.DataFrame, grid: pd.DataFrame) -> np.ndarray:
    """Which grid points lie outside what the trials sampled: beyond the sampled span of a
    range or ordered choice by more than :data:`OUTSIDE_MARGIN`, or at an unordered choice
    no trial took."""
    encoder = SpaceEncoder(space)
    sampled, points = encoder.design(done), encoder.design(grid)
    outside = np.zeros(len(grid), dtype=bool)
    for i, name in enumerate(encoder.names):
        if encoder.is_unordered(name):
            outside |= ~np.isin(points[:, i], sampled[:, i])
        else:
            margin = OUTSIDE_MARGIN * encoder.bounds[1, i] + 1e-9
            outside |= (points[:, i] < sampled[:, i].min() - margin) | (points[:, i] > sampled[:, i].max() + margin)
    return outside


def _sampled_range(space: dict[str, Any], name: str, done: pd.DataFrame) -> str:
    param, values = space[name], done[name]
    if isinstance(param, Choice) and not param.ordered:
        return f"{name}: {values.nunique()} of {len(param.values)} values"
    full = (param.values[0], param.values[-1]) if isinstance(param, Choice) else (param.low, param.high)
    return f"{name} {values.min():g}-{values.max():g} of {full[0]:g}-{full[1]:g}"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
