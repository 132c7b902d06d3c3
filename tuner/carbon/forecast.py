"""A forecast from history alone, for zones or files without a forecast API.

"Yesterday's curve is today's forecast" waits for dips that were weather, not routine,
and on the 2020 German and French traces it emits *more* than starting at once. This
forecaster separates the two:

- the *routine*: the mean daily profile of the last ``days`` days at the same time of
  day, with the same weekday weighted up (weekends differ);
- the *weather*: how far the latest observation sits from that profile, an anomaly that
  fades towards the profile with time constant ``anomaly_hours``.

It is still a guess, so plan with it using a margin (``SchedulePolicy(min_saving=...)``,
:data:`HISTORY_MIN_SAVING`): wait only when the predicted saving clears it.
``benchmarks/carbon_shift.py`` measures the result against run-now and the oracle.

Example::

    provider = HistoryForecast(CsvProvider("ger_ci.csv"))
    series = provider.forecast(now, now + timedelta(hours=24))
    plan = plan_start(series, now, timedelta(hours=4), now + timedelta(hours=24),
                      SchedulePolicy(min_saving=HISTORY_MIN_SAVING))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries
from tuner.carbon.series import last_step, to_utc

HISTORY_MIN_SAVING = 0.02  # measured on the 2020 DE/FR traces: see benchmarks/carbon_shift.py
DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class ProfileForecaster:
    """Recent daily profile plus the current anomaly, fading (see the module docstring)."""

    days: int = 14
    same_weekday_weight: float = 3.0
    anomaly_hours: float = 24.0

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"days must be >= 1, got {self.days}")
        if self.same_weekday_weight < 0:
            raise ValueError(f"same_weekday_weight must be >= 0, got {self.same_weekday_weight}")
        if not self.anomaly_hours >= 0:
            raise ValueError(f"anomaly_hours must be >= 0 (0: no anomaly), got {self.anomaly_hours}")

    @property
    def history_needed(self) -> timedelta:
        return timedelta(days=self.days + 1)

    def predict(self, history: pd.Series, now: datetime, end: datetime) -> pd.Series:
        """Forecast over ``[now, end)`` on the history's own step, from values before ``now``.

        Points with no past day to draw on (beyond ``days`` days ahead) are left out, so
        the forecast may be shorter than asked.
        """
        now_ts, end_ts = to_utc(now), to_utc(end)
        past = history[history.index < now_ts].dropna().sort_index()
        if past.empty:
            raise ValueError(f"no history before {now_ts} to forecast from")
        step = last_step(past)
        last_seen = past.index[-1]
        # the profile at the last observation too, to measure today's anomaly like for like
        times = pd.DatetimeIndex([last_seen]).append(
            pd.date_range(now_ts, end_ts, freq=step, inclusive="left"))
        profile = self._profile(past, times, now_ts)
        if np.isnan(profile[0]):
            raise ValueError("history too short: no earlier day to compare the latest value with")
        anomaly = past.iloc[-1] - profile[0]
        times, profile = times[1:], profile[1:]
        seen = ~np.isnan(profile)
        hours = (times[seen] - now_ts).total_seconds().to_numpy() / 3600.0
        fade = np.exp(-hours / self.anomaly_hours) if self.anomaly_hours > 0 else 0.0
        return pd.Series(profile[seen] + anomaly * fade, index=times[seen])

    def _profile(self, past: pd.Series, times: pd.DatetimeIndex, now: pd.Timestamp) -> np.ndarray:
        """Weighted mean of the values in force one, two, ... ``days`` days before each time."""
        known = past.index.as_unit("ns").asi8
        values = past.to_numpy(dtype=float)
        total = np.zeros(len(times))
        weight = np.zeros(len(times))
        for d in range(1, self.days + 1):
            shifted = (times - d * DAY).as_unit("ns").asi8
            pos = np.searchsorted(known, shifted, side="right") - 1
            ok = (pos >= 0) & (shifted < now.value)
            w = self.same_weekday_weight if d % 7 == 0 else 1.0
            total[ok] += w * values[pos[ok]]
            weight[ok] += w
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(weight > 0, total / weight, np.nan)


class HistoryForecast(IntensityProvider):
    """Gives any provider with history a forecast built by :class:`ProfileForecaster`.

    ``current`` and ``history`` go to the wrapped provider unchanged.
    """

    def __init__(self, inner: IntensityProvider, forecaster: ProfileForecaster | None = None):
        self.inner = inner
        self.forecaster = forecaster or ProfileForecaster()
        self.name = f"{inner.name}+history-forecast"
        self.signal = inner.signal

    def current(self) -> IntensityReading:
        return self.inner.current()

    def history(self, start: datetime, end: datetime) -> IntensitySeries:
        return self.inner.history(start, end)

    def forecast(self, start: datetime, end: datetime) -> IntensitySeries:
        past = self.inner.history(start - self.forecaster.history_needed, start)
        values = self.forecaster.predict(past.values, start, end)
        return IntensitySeries(values, f"{past.source} (profile forecast from history)",
                               past.signal, past.fallback_reason)
