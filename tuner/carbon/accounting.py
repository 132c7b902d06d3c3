"""CO2 over time: each slice of a trial's energy meets the intensity of its own moment.

A trial's CO2 is not its average power times one intensity. Its energy timeline (the
cumulative kWh of every heartbeat, with the time the driver saw it) is cut into
segments; within a segment power is taken as constant, so the segment's CO2 is its
energy times the *time-weighted mean* intensity over exactly that segment, and the trial
is the sum, times PUE. With a 2 s heartbeat and a 15-60 min intensity step this is the
"energy per bucket x bucket intensity" integral at the finer of the two resolutions.

Example::

    timeline = [(t0, 0.0), (t0 + 1800, 0.5), (t0 + 3600, 1.0)]     # (unix s, kWh)
    trial_co2(timeline, series, pue=1.2).co2_kg
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tuner.carbon.base import IntensityProvider, IntensitySeries
from tuner.carbon.series import StepFunction

if TYPE_CHECKING:
    from tuner.study.record import TrialRecord

log = logging.getLogger(__name__)
G_PER_KG = 1000.0


@dataclass(frozen=True)
class TrialCarbon:
    """One trial's emissions: ``co2_kg`` includes PUE; ``mean_g_per_kwh`` is the
    energy-weighted mean intensity the trial actually saw."""

    co2_kg: float
    mean_g_per_kwh: float
    energy_kwh: float


def clean_timeline(
    points: Sequence[tuple[float, float]],
    start: float,
    end: float,
    energy_kwh: float,
    *,
    shape_only: bool = False,
) -> list[tuple[float, float]]:
    """A usable timeline from raw heartbeats: starts at (start, 0), is non-decreasing, ends
    at (end, energy_kwh).

    Measured heartbeats are kept as they are, and the last segment gets what was spent
    after the last one. With ``shape_only`` (the final figure came from the objective's
    own meter, the heartbeats from the CPU-time estimate) the heartbeats only say *when*
    energy was spent: the curve, extended to ``end`` at the last heartbeat's power, is
    scaled to the final figure. Without heartbeats energy is spread evenly.
    """
    inside = sorted((t, e) for t, e in points if start < t < end and math.isfinite(e))
    times = np.array([start, *(t for t, _ in inside), end], dtype=float)
    cumulative = np.maximum.accumulate(np.array([0.0, *(e for _, e in inside), 0.0]))
    if len(inside) and cumulative[-2] > 0:
        last = cumulative[-2]
        if shape_only:
            span = times[-2] - times[-3]
            power = (cumulative[-2] - cumulative[-3]) / span if span > 0 else 0.0
            cumulative[-1] = last + power * (times[-1] - times[-2])
            cumulative *= energy_kwh / cumulative[-1]
        elif energy_kwh < last:  # a final figure below the heartbeats: keep their shape
            cumulative *= energy_kwh / last
    cumulative[-1] = energy_kwh
    return list(zip(times.tolist(), cumulative.tolist(), strict=True))


def trial_co2(
    timeline: Sequence[tuple[float, float]], series: IntensitySeries, pue: float = 1.0
) -> TrialCarbon:
    """CO2 of a (time s, cumulative kWh) timeline under ``series``.

    Where the series does not cover a segment, the nearest value it has holds (a series
    ends with its last value in force).
    """
    if len(timeline) < 2:
        return TrialCarbon(0.0, math.nan, 0.0)
    times = np.array([t for t, _ in timeline], dtype=float)
    energy = np.diff(np.array([e for _, e in timeline], dtype=float))
    fn = StepFunction(_extended(series.values, times[0], times[-1]))
    edges = pd.to_datetime(times, unit="s", utc=True)
    intensities = fn.means(pd.DatetimeIndex(edges))
    # a zero-length segment (two heartbeats in the same instant) takes the point value
    zero = ~np.isfinite(intensities)
    for i in np.flatnonzero(zero):
        intensities[i] = fn.mean(edges[i], edges[i])
    grams = float(np.sum(energy * intensities))
    total = float(energy.sum())
    mean = grams / total if total > 0 else float(np.mean(intensities))
    return TrialCarbon(grams * pue / G_PER_KG, mean, total)


def _extended(values: pd.Series, start_s: float, end_s: float) -> pd.Series:
    """``values`` with the first value back-filled to ``start_s`` and the last carried past
    ``end_s``, so every segment has an intensity."""
    values = values.dropna().sort_index()
    start = pd.Timestamp(start_s, unit="s", tz="UTC")
    end = pd.Timestamp(end_s, unit="s", tz="UTC")
    extra = {}
    if values.index[0] > start:
        extra[start] = float(values.iloc[0])
    if values.index[-1] <= end:
        extra[end + pd.Timedelta(seconds=1)] = float(values.iloc[-1])
    if extra:
        values = pd.concat([values, pd.Series(extra)]).sort_index()
    return values


class CarbonAccountant:
    """Books CO2 for a study's trials from its provider, and the study's totals.

    ``study_start`` anchors the counterfactual: every trial's energy profile moved to
    start at once at the study's start, with no waiting and no queue.
    """

    def __init__(self, provider: IntensityProvider, pue: float, study_start: float) -> None:
        self.provider = provider
        self.pue = pue
        self.study_start = study_start
        self.fallback_reasons: set[str] = set()

    def intensity(self, start_s: float, end_s: float) -> IntensitySeries:
        """Observed intensity over [start, end] (history; the provider falls back itself)."""
        start = datetime.fromtimestamp(start_s, tz=timezone.utc)
        end = datetime.fromtimestamp(max(end_s, start_s + 1.0), tz=timezone.utc)
        series = self.provider.history(start, end)
        if series.values.dropna().empty:  # e.g. the API has nothing yet for the last minutes
            reading = self.provider.current()
            values = pd.Series([reading.g_per_kwh], index=pd.DatetimeIndex([start]))
            series = IntensitySeries(values, reading.source, reading.signal, reading.fallback_reason)
        if series.fallback_reason:
            self.fallback_reasons.add(series.fallback_reason)
        return series

    @staticmethod
    def _timeline(entry: TrialRecord) -> list[tuple[float, float]]:
        start = entry.run_started_at or entry.started_at
        end = max(entry.ended_at or start, start)
        reported = entry.info.get("energy_source") == "reported"
        return clean_timeline(
            entry.energy_timeline, start, end, entry.energy_kwh, shape_only=reported
        )

    def trial(self, entry: TrialRecord) -> dict[str, Any]:
        """The carbon fields for a finished trial's ledger ``info``."""
        start = entry.run_started_at or entry.started_at
        end = entry.ended_at or start
        timeline = self._timeline(entry)
        series = self.intensity(start, end)
        carbon = trial_co2(timeline, series, self.pue)
        info: dict[str, Any] = {
            "co2_kg": carbon.co2_kg,
            "carbon_intensity_mean": carbon.mean_g_per_kwh,
            "carbon_provider": series.source,
            "carbon_signal": series.signal,
        }
        if series.fallback_reason:
            info["carbon_fallback"] = series.fallback_reason
        return info

    def counterfactual_kg(self, entry: TrialRecord, series: IntensitySeries | None = None) -> float:
        """The trial's CO2 had it started at the study's start (same energy profile)."""
        timeline = self._timeline(entry)
        shift = self.study_start - timeline[0][0]
        moved = [(t + shift, e) for t, e in timeline]
        series = series or self.intensity(moved[0][0], moved[-1][0])
        return trial_co2(moved, series, self.pue).co2_kg

    def study(
        self, entries: Iterable[TrialRecord], overhead_kwh: float, study_end: float
    ) -> dict[str, Any]:
        """Study totals: CO2 as run, and the all-at-once counterfactual (same overhead).

        The tuner's own overhead energy is spread over the study's duration.
        """
        entries = [e for e in entries if e.energy_kwh > 0 or e.energy_timeline]
        study_end = max(study_end, self.study_start + 1.0)
        overhead = trial_co2(
            [(self.study_start, 0.0), (study_end, overhead_kwh)],
            self.intensity(self.study_start, study_end),
            self.pue,
        ).co2_kg
        actual = sum(float(e.info.get("co2_kg") or 0.0) for e in entries)
        longest = max((t[-1][0] - t[0][0] for t in map(self._timeline, entries)), default=0.0)
        counterfactual = 0.0
        try:
            window = self.intensity(self.study_start, self.study_start + longest)
            counterfactual = sum(self.counterfactual_kg(e, window) for e in entries)
        except Exception as exc:  # noqa: BLE001 - accounting must not lose a study
            log.warning("carbon: no counterfactual (%s); using the CO2 as run", exc)
            counterfactual = actual
        total = actual + overhead
        energy = sum(e.energy_kwh for e in entries) + overhead_kwh
        out: dict[str, Any] = {
            "co2_kg": total,
            "co2_counterfactual_kg": counterfactual + overhead,
            "co2_saved_kg": counterfactual + overhead - total,
            "carbon_intensity_mean": (
                total * G_PER_KG / (energy * self.pue) if energy > 0 else math.nan
            ),
        }
        return out
