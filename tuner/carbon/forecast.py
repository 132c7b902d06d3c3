"""A forecast from history alone, for zones or files without a forecast API.

"Yesterday's curve is today's forecast" waits for dips that were weather, not routine,
and on the 2020 German and French traces it emits *more* than starting at once. The
forecasters here separate the two:

- the *routine*: the mean daily profile of the last ``days`` days at the same time of
  day (optionally with the same weekday weighted up);
- the *weather*: how far the latest observation sits from that profile, an anomaly that
  carries over into the forecast.

:class:`FittedForecaster` (the default) learns how much of the anomaly carries over at
each lead time from the provider's own recent past (a one-coefficient least-squares fit
per lead time over the last ``fit_days`` days before ``now``), so nothing in it is tuned
to a particular trace. :class:`ProfileForecaster` fades the anomaly with a fixed time
constant instead; it is kept for comparison and, with ``days=1, anomaly_hours=0``, is the
naive "yesterday's curve" strawman.

Either is still a guess, so :meth:`HistoryForecast.saving_risk` measures how wrong it
has been: the plan waits only for a saving that clears the forecast's own past error at
that lead time with ``HISTORY_CONFIDENCE`` (``SchedulePolicy(confidence=...)``).
``HISTORY_MIN_SAVING`` is a flat margin on top; it is 0. ``benchmarks/carbon_shift.py``
measures the result against run-now and the oracle, day by day.

Example::

    provider = HistoryForecast(CsvProvider("ger_ci.csv"))
    series = provider.forecast(now, now + timedelta(hours=24))
    risk = provider.saving_risk(now, now + timedelta(hours=24), timedelta(hours=4),
                                HISTORY_CONFIDENCE)
    plan = plan_start(series, now, timedelta(hours=4), now + timedelta(hours=24),
                      SchedulePolicy(confidence=HISTORY_CONFIDENCE), risk)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries
from tuner.carbon.guard import WaitGuard
from tuner.carbon.schedule import SavingRisk
from tuner.carbon.series import StepFunction, last_step, to_utc

# No margin: with the fitted carry-over, a margin bought nothing on the DE/FR replays and
# cost share of the oracle (benchmarks/carbon_shift.py --margin; docs/carbon.md).
HISTORY_MIN_SAVING = 0.0
#: How sure a history forecast's saving must be before a plan waits for it: the share of
#: past days on which the realised saving was at least the one the plan counts on
#: (:class:`~tuner.carbon.schedule.SavingRisk`). Chosen on one 2020 trace and checked on
#: the other (benchmarks/carbon_shift.py --choose; docs/carbon.md).
HISTORY_CONFIDENCE = 0.9
#: The extra re-checks a history-forecast wait runs at each re-plan (:mod:`tuner.carbon.guard`):
#: none. Chosen leaving one 2020 trace out (benchmarks/carbon_shift.py --choose-guard;
#: docs/carbon.md): on FR every guard lowered the mean saving and none lifted the worst day.
HISTORY_GUARD: WaitGuard | None = None
#: How often a gate on a history forecast re-plans (and so re-checks a wait): hourly, the
#: cadence ``benchmarks/carbon_shift.py`` replays, so the figures are those of the live gate.
HISTORY_REPLAN = timedelta(hours=1)
#: Past days on which the forecast's error is measured, at the same time of day.
BACKTEST_DAYS = 28
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
        past, step = _past(history, now_ts)
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
        return daily_profile(past, times, now, self.days, self.same_weekday_weight)


def daily_profile(past: pd.Series, times: pd.DatetimeIndex, now: pd.Timestamp, days: int,
                  same_weekday_weight: float = 1.0) -> np.ndarray:
    """Weighted mean of the values in force one, two, ... ``days`` days before each time,
    using only values from before ``now`` (NaN where no such day exists)."""
    known = past.index.as_unit("ns").asi8
    values = past.to_numpy(dtype=float)
    total = np.zeros(len(times))
    weight = np.zeros(len(times))
    for d in range(1, days + 1):
        shifted = (times - d * DAY).as_unit("ns").asi8
        pos = np.searchsorted(known, shifted, side="right") - 1
        ok = (pos >= 0) & (shifted < now.value)
        w = same_weekday_weight if d % 7 == 0 else 1.0
        total[ok] += w * values[pos[ok]]
        weight[ok] += w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / weight, np.nan)


@dataclass(frozen=True)
class FittedForecaster:
    """The daily profile plus the latest anomaly times a carry-over fitted on the past.

    For each lead time ``L`` from the last observation to a forecast point, the carry-over
    ``a_L`` is the least-squares slope (no intercept) of the anomaly ``L`` later on the
    anomaly now, over every observation in the last ``fit_days`` days whose follow-up was
    already seen before ``now``. It is the anomaly's own autocorrelation, measured on the
    provider's recent past, so it adapts to the zone and the season without constants
    tuned on one trace. Lead times with fewer than a day of pairs carry no anomaly
    (the forecast falls back to the profile).
    """

    days: int = 14
    fit_days: int = 28
    same_weekday_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"days must be >= 1, got {self.days}")
        if self.fit_days < 1:
            raise ValueError(f"fit_days must be >= 1, got {self.fit_days}")
        if self.same_weekday_weight < 0:
            raise ValueError(f"same_weekday_weight must be >= 0, got {self.same_weekday_weight}")

    @property
    def history_needed(self) -> timedelta:
        return timedelta(days=self.days + self.fit_days + 1)

    def predict(self, history: pd.Series, now: datetime, end: datetime) -> pd.Series:
        """Forecast over ``[now, end)`` on the history's own step, from values before ``now``.

        Points with no past day to draw on (beyond ``days`` days ahead) are left out, so
        the forecast may be shorter than asked.
        """
        now_ts, end_ts = to_utc(now), to_utc(end)
        past, step = _past(history, now_ts)
        times = pd.date_range(now_ts, end_ts, freq=step, inclusive="left")
        profile = daily_profile(past, times, now_ts, self.days, self.same_weekday_weight)
        recent = past[past.index >= now_ts - self.fit_days * DAY]
        anomaly = recent.to_numpy(dtype=float) - daily_profile(
            past, recent.index, now_ts, self.days, self.same_weekday_weight)
        seen_at = recent.index.as_unit("ns").asi8
        if np.isnan(anomaly[-1]):
            raise ValueError("history too short: no earlier day to compare the latest value with")
        keep = ~np.isnan(profile)
        times, profile = times[keep], profile[keep]
        lags = times.as_unit("ns").asi8 - seen_at[-1]
        carry = _carry_over(seen_at, anomaly, lags, min_pairs=max(2, int(DAY / step)))
        return pd.Series(profile + carry * anomaly[-1], index=times)


def _carry_over(seen_at: np.ndarray, anomaly: np.ndarray, lags: np.ndarray,
                min_pairs: int) -> np.ndarray:
    """Per lag (ns), the no-intercept least-squares slope of anomaly(t + lag) on anomaly(t)
    over observed pairs; 0 where fewer than ``min_pairs`` pairs exist."""
    valid = ~np.isnan(anomaly)
    x = np.where(valid, anomaly, 0.0)
    target = seen_at[:, None] + lags[None, :]  # (observations, lags)
    pos = np.searchsorted(seen_at, target, side="right") - 1  # the value in force then
    ok = valid[:, None] & valid[pos] & (target <= seen_at[-1])
    y = np.where(ok, x[pos], 0.0)
    xs = np.where(ok, x[:, None], 0.0)
    sxx = (xs * xs).sum(axis=0)
    sxy = (xs * y).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where((ok.sum(axis=0) >= min_pairs) & (sxx > 0), sxy / sxx, 0.0)
    return slope


Forecaster = FittedForecaster | ProfileForecaster


def _past(history: pd.Series, now: pd.Timestamp) -> tuple[pd.Series, pd.Timedelta]:
    """The values before ``now`` (the only ones a forecast may read), sorted, and their step."""
    past = history[history.index < now].dropna().sort_index()
    if past.empty:
        raise ValueError(f"no history before {now} to forecast from")
    return past, last_step(past)


class HistoryForecast(IntensityProvider):
    """Gives any provider with history a forecast built from that history
    (:class:`FittedForecaster` unless another forecaster is given), and measures how
    wrong that forecast has been (:meth:`saving_risk`).

    ``current`` and ``history`` go to the wrapped provider unchanged.
    """

    def __init__(self, inner: IntensityProvider, forecaster: Forecaster | None = None,
                 *, backtest_days: int = BACKTEST_DAYS):
        if backtest_days < 1:
            raise ValueError(f"backtest_days must be >= 1, got {backtest_days}")
        self.inner = inner
        self.forecaster = forecaster or FittedForecaster()
        self.backtest_days = backtest_days
        self.name = f"{inner.name}+history-forecast"
        self.signal = inner.signal
        # forecasts made at past origins depend only on the history before them: kept, so
        # re-planning every hour does not refit the same past days again
        self._backtests: dict[int, tuple[int, pd.Series | None]] = {}

    def saving_risk(self, now: datetime, deadline: datetime, work: timedelta,
                    confidence: float) -> SavingRisk:
        """The forecast's past error on the saving of each start up to ``deadline - work``.

        For each of the last ``backtest_days`` days, the forecaster is run at the same
        time of day from only what was known then, and the saving it promised for a
        window starting ``L`` later is compared with the saving that window really gave
        (both against starting at that origin). This is the error the plan must clear
        at lead time ``L``; origins whose windows are not all in the past yet are
        measured on the part that is.
        """
        now_ts = to_utc(now)
        horizon = to_utc(deadline) - now_ts
        work_td = pd.Timedelta(work)
        start = now_ts - self.backtest_days * DAY - pd.Timedelta(self.forecaster.history_needed)
        values = self.inner.history(start.to_pydatetime(), now_ts.to_pydatetime()).values
        values = values.dropna().sort_index()
        step = last_step(values) if len(values) else pd.Timedelta(hours=1)
        latest = max((horizon - work_td).total_seconds(), 0.0)
        offsets = np.arange(0.0, latest + 1e-6, step.total_seconds())
        rows = []
        if len(values) >= 2:
            actual = StepFunction(values)
            width = float(work_td.value)
            for b in range(1, self.backtest_days + 1):
                origin = now_ts - b * DAY
                predicted = self._backtest(values, origin, origin + horizon)
                if predicted is None or len(predicted) < 1:
                    continue
                starts = origin.value + offsets * 1e9
                got = actual.window_means(starts, width)
                promised = StepFunction(predicted).window_means(starts, width)
                if np.isnan(got[0]) or np.isnan(promised[0]) or got[0] <= 0 or promised[0] <= 0:
                    continue
                rows.append((1.0 - got / got[0]) - (1.0 - promised / promised[0]))
        errors = np.array(rows) if rows else np.full((0, len(offsets)), np.nan)
        return SavingRisk(offsets, errors, confidence, "past days' forecasts at this hour")

    def _backtest(self, values: pd.Series, origin: pd.Timestamp, end: pd.Timestamp) -> pd.Series | None:
        cached = self._backtests.get(origin.value)
        if cached is not None and cached[0] >= end.value:
            return cached[1]
        try:
            predicted: pd.Series | None = self.forecaster.predict(values, origin.to_pydatetime(),
                                                                  end.to_pydatetime())
        except ValueError:  # not enough history before that origin
            predicted = None
        if len(self._backtests) >= 20_000:  # a year of hourly origins; oldest first out
            self._backtests.pop(next(iter(self._backtests)))
        self._backtests[origin.value] = (end.value, predicted)
        return predicted

    def current(self) -> IntensityReading:
        return self.inner.current()

    def history(self, start: datetime, end: datetime) -> IntensitySeries:
        return self.inner.history(start, end)

    def forecast(self, start: datetime, end: datetime) -> IntensitySeries:
        past = self.inner.history(start - self.forecaster.history_needed, start)
        values = self.forecaster.predict(past.values, start, end)
        return IntensitySeries(values, f"{past.source} (profile forecast from history)",
                               past.signal, past.fallback_reason)
