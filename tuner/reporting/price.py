"""The price tag: what the study cost in kWh, CO2, money and device-hours, and what a grid would have.

Money and CO2 are charged on the facility energy (total kWh x PUE), which is what the
building drew. CO2 comes from measured figures when the study has them (a
``TuneResult.co2_kg`` total, else a ``co2_kg`` column on every trial, with the overhead at
the fallback intensity) and otherwise from the fallback intensity: ``report.co2_kg_per_kwh``
when set, else the static carbon provider's world average (:func:`fallback_intensity`);
``co2_source`` says which.

The grid estimate fits ``log(kWh)`` of the completed trials linearly on the parameters
(ranges on their search scale, choices one-hot; ridge with the penalty chosen by
leave-one-out CV) and sums ``exp`` of its prediction over every point of the grid the
``grid`` strategy would run at the study's ``grid_resolution``, times Duan's smearing
factor (the mean of ``exp(residual)``) so the back-transform is not biased low. The
model is additive in log space, so the sum factorises per parameter and stays exact for
grids of any size. The 90 % interval comes from refitting on 200 bootstrap resamples.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tuner.config import ENERGY_METRIC, FloatRange, IntRange, ReportSettings
from tuner.reporting._space import SpaceEncoder

if TYPE_CHECKING:
    from tuner.result import TuneResult

BOOTSTRAPS = 200


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
    """What the full grid would have cost, from a log-linear energy model (see module doc)."""
    from sklearn.linear_model import RidgeCV

    from tuner.search.baselines import grid_levels

    if result.config is None:
        raise ValueError("needs the study's search space (TuneResult.config is None)")
    space = result.config.tunable
    resolution = result.config.grid_resolution
    encoder = SpaceEncoder(space)
    done = result.completed[result.completed[ENERGY_METRIC] > 0]
    if len(done) < 3:
        raise ValueError(f"not estimated: {len(done)} completed trials with energy, need at least 3")
    design = encoder.design(done)
    blocks = [_energy_features(encoder, name, design[:, i]) for i, name in enumerate(encoder.names)]
    x = np.hstack(blocks)
    y = np.log(done[ENERGY_METRIC].to_numpy(float))
    grid_blocks = [_energy_features(encoder, name, encoder.design_of(name, grid_levels(space[name], resolution)))
                   for name in encoder.names]
    points = int(np.prod([len(b) for b in grid_blocks]))

    def fit_and_sum(rows: np.ndarray) -> tuple[float, float]:
        model = RidgeCV(alphas=np.logspace(-6, 2, 17)).fit(x[rows], y[rows])
        smear = float(np.mean(np.exp(y[rows] - model.predict(x[rows]))))
        total, column = math.exp(model.intercept_) * smear, 0
        for block in grid_blocks:  # additive in log space: the grid sum is a product of per-parameter sums
            width = block.shape[1]
            total *= float(np.exp(block @ model.coef_[column:column + width]).sum())
            column += width
        return total, float(model.score(x[rows], y[rows]))

    kwh, r2 = fit_and_sum(np.arange(len(y)))
    rng = np.random.default_rng(0)
    samples = [fit_and_sum(rng.integers(len(y), size=len(y)))[0] for _ in range(BOOTSTRAPS)]
    low, high = np.percentile(samples, [5, 95])
    method = (f"ridge regression of log(kWh) on {x.shape[1]} parameter features over {len(done)} completed "
              f"trials (in-sample R^2 {r2:.2f}), exp-summed over all {points} grid points at resolution "
              f"{resolution} with Duan's smearing; 90 % bootstrap interval over {BOOTSTRAPS} refits")
    return GridEstimate(points, resolution, kwh, float(low), float(high), r2, len(done), method)


def _energy_features(encoder: SpaceEncoder, name: str, design: np.ndarray) -> np.ndarray:
    """One parameter's columns: its model features, plus log(value) for a linear range above 0.

    The log column lets the model fit power laws (energy proportional to epochs, say),
    which are what compute usually follows.
    """
    full = np.zeros((len(design), len(encoder.names)))
    full[:, encoder.names.index(name)] = design
    features = encoder.features(full)
    start = sum(encoder.width(n) for n in encoder.names[: encoder.names.index(name)])
    own = features[:, start:start + encoder.width(name)]
    param = encoder.space[name]
    if isinstance(param, (FloatRange, IntRange)) and not param.log and param.low > 0:
        value = param.low + design * (param.high - param.low)
        own = np.hstack([own, np.log(value)[:, None]])
    return own
