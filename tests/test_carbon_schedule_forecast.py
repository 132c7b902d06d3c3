"""The history-only forecasters: routine profile, the anomaly carried over (a fixed fade or
fitted on the past), and no peeking at the future."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries
from tuner.carbon.forecast import (
    HISTORY_MIN_SAVING,
    FittedForecaster,
    HistoryForecast,
    ProfileForecaster,
    _carry_over,
)
from tuner.carbon.schedule import SchedulePolicy, plan_start
from tuner.carbon.series import to_utc, window

T0 = datetime(2020, 3, 2, tzinfo=timezone.utc)  # a Monday
H = timedelta(hours=1)


def daily_pattern(days: int, start: datetime = T0 - timedelta(days=21)) -> pd.Series:
    """A clean routine: 100 g/kWh, 40 from 12:00 to 16:00 every day."""
    idx = pd.date_range(start, periods=24 * days, freq="1h", tz="UTC")
    return pd.Series(np.where((idx.hour >= 12) & (idx.hour < 16), 40.0, 100.0), index=idx)


class SeriesProvider(IntensityProvider):
    name, signal = "series", "average"

    def __init__(self, values: pd.Series) -> None:
        self.values = values

    def current(self) -> IntensityReading:
        raise NotImplementedError("not used here")

    def history(self, start: datetime, end: datetime) -> IntensitySeries:
        return IntensitySeries(window(self.values, to_utc(start), to_utc(end)), "series", "average")

    forecast = history


def test_a_steady_routine_is_forecast_exactly():
    history = daily_pattern(30)
    forecast = ProfileForecaster().predict(history, T0, T0 + 24 * H)
    expected = history[T0:T0 + 23 * H]
    assert list(forecast.index) == list(expected.index)
    np.testing.assert_allclose(forecast.to_numpy(), expected.to_numpy())


def test_only_values_before_now_are_used():
    history = daily_pattern(30)
    spiked = history.copy()
    spiked[spiked.index >= T0] = 5000.0  # the future, which a forecaster must not see
    a = ProfileForecaster().predict(history, T0, T0 + 24 * H)
    b = ProfileForecaster().predict(spiked, T0, T0 + 24 * H)
    pd.testing.assert_series_equal(a, b)


def test_todays_anomaly_fades_with_the_time_constant():
    history = daily_pattern(30)
    history[T0 - H] = 160.0  # the last hour ran 60 above its routine
    forecast = ProfileForecaster(anomaly_hours=6).predict(history, T0, T0 + 24 * H)
    assert forecast[T0] == pytest.approx(160)
    assert forecast[T0 + 6 * H] == pytest.approx(100 + 60 * math.exp(-1))
    assert forecast[T0 + 12 * H] == pytest.approx(40 + 60 * math.exp(-2))
    routine_only = ProfileForecaster(anomaly_hours=0).predict(history, T0, T0 + 24 * H)
    assert routine_only[T0] == pytest.approx(100)


def test_the_same_weekday_weighs_more():
    history = daily_pattern(30)
    mondays = (history.index.dayofweek == 0) & (history.index.hour == 3)
    history[mondays] = 200.0  # only Mondays at 03:00 run high
    plain = ProfileForecaster(same_weekday_weight=1).predict(history, T0, T0 + 24 * H)
    weighted = ProfileForecaster(same_weekday_weight=5).predict(history, T0, T0 + 24 * H)
    at3 = T0 + 3 * H  # T0 is a Monday
    assert plain[at3] == pytest.approx(100 + 100 * 2 / 14)
    assert weighted[at3] == pytest.approx(100 + 100 * 10 / 22)


def test_forecast_stops_where_no_past_day_reaches():
    history = daily_pattern(30)
    forecast = ProfileForecaster(days=2).predict(history, T0, T0 + 72 * H)
    assert forecast.index[-1] == T0 + 47 * H


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="no history before"):
        ProfileForecaster().predict(daily_pattern(3, start=T0), T0, T0 + H)
    with pytest.raises(ValueError, match="days must be >= 1"):
        ProfileForecaster(days=0)
    with pytest.raises(ValueError, match="anomaly_hours"):
        ProfileForecaster(anomaly_hours=-1)


def sine_with_trend(days: int, per_day: float = 2.0, step: str = "1h",
                    until: datetime = T0) -> pd.Series:
    """A daily sine on a steady upward trend, from ``days`` days before T0 to ``until``."""
    idx = pd.date_range(T0 - timedelta(days=days), until, freq=step, tz="UTC", inclusive="left")
    hours = (idx - idx[0]).total_seconds().to_numpy() / 3600
    return pd.Series(200 + 50 * np.sin(2 * np.pi * hours / 24) + per_day * hours / 24, index=idx)


@pytest.mark.parametrize("step", ["1h", "15min"])
def test_fitted_forecaster_continues_a_daily_sine_on_a_trend_exactly(step):
    # the 14-day profile lags the trend by 7.5 days; the anomaly it leaves is constant, so
    # the fitted carry-over is 1 at every lead time and the trend continues unfaded
    full = sine_with_trend(60, step=step, until=T0 + 24 * H)
    history, truth = full[full.index < T0], full[full.index >= T0]
    forecast = FittedForecaster().predict(history, T0, T0 + 24 * H)
    assert list(forecast.index) == list(truth.index)
    np.testing.assert_allclose(forecast.to_numpy(), truth.to_numpy(), rtol=0, atol=1e-6)
    faded = ProfileForecaster(same_weekday_weight=1).predict(history, T0, T0 + 24 * H)
    assert np.abs(faded - truth).max() > 3  # a fixed fade loses part of the trend


def test_carry_over_recovers_a_geometric_decay():
    seen = np.arange(200, dtype=np.int64) * 10
    anomaly = 0.9 ** np.arange(200.0)  # each value is 0.9 times the one before
    slopes = _carry_over(seen, anomaly, np.array([10, 20, 50]), min_pairs=24)
    np.testing.assert_allclose(slopes, [0.9, 0.81, 0.9 ** 5])
    too_few = _carry_over(seen[:20], anomaly[:20], np.array([10]), min_pairs=24)
    assert too_few[0] == 0.0  # not enough pairs: no anomaly carried


def test_fitted_forecaster_never_reads_values_at_or_after_now():
    full = sine_with_trend(60, until=T0 + 48 * H)
    history = full[full.index < T0]
    leaked = full.where(full.index < T0, 5000.0)  # a wild future, starting exactly at now
    a = FittedForecaster().predict(history, T0, T0 + 24 * H)
    b = FittedForecaster().predict(leaked, T0, T0 + 24 * H)
    pd.testing.assert_series_equal(a, b)
    # ... but it does read the past: a different past moves the forecast
    c = FittedForecaster().predict(history * 1.1, T0, T0 + 24 * H)
    assert not np.allclose(a.to_numpy(), c.to_numpy())


def test_fitted_forecaster_with_under_a_day_of_pairs_is_the_plain_profile():
    history = daily_pattern(2, start=T0 - timedelta(days=2))
    history[T0 - H] = 160.0  # an anomaly it has no past to learn the persistence of
    forecast = FittedForecaster().predict(history, T0, T0 + 24 * H)
    routine = ProfileForecaster(days=14, same_weekday_weight=1, anomaly_hours=0)
    pd.testing.assert_series_equal(forecast, routine.predict(history, T0, T0 + 24 * H),
                                   check_freq=False)


def test_fitted_forecaster_errors_name_the_problem():
    with pytest.raises(ValueError, match="no history before"):
        FittedForecaster().predict(daily_pattern(3, start=T0), T0, T0 + H)
    with pytest.raises(ValueError, match="no earlier day"):
        FittedForecaster().predict(daily_pattern(1, start=T0 - timedelta(days=1)), T0, T0 + H)
    with pytest.raises(ValueError, match="fit_days must be >= 1"):
        FittedForecaster(fit_days=0)
    with pytest.raises(ValueError, match="days must be >= 1"):
        FittedForecaster(days=0)
    assert FittedForecaster(days=14, fit_days=28).history_needed == timedelta(days=43)


def test_history_forecast_provider_plans_into_the_routine_low():
    provider = HistoryForecast(SeriesProvider(daily_pattern(30)))
    assert isinstance(provider.forecaster, FittedForecaster)
    series = provider.forecast(T0, T0 + 24 * H)
    assert "profile forecast from history" in series.source
    plan = plan_start(series, T0, 2 * H, T0 + 24 * H, SchedulePolicy(min_saving=HISTORY_MIN_SAVING))
    assert plan.start == T0 + 12 * H
    assert plan.saving_fraction == pytest.approx(0.6)


DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "carbon" / "ger_ci.csv"


@pytest.mark.skipif(not DATA.is_file(), reason=f"shared data not found at {DATA}")
def test_history_policy_never_loses_against_run_now_on_a_month_of_the_german_trace():
    from tuner.carbon.csvfile import CsvProvider
    from tuner.carbon.series import StepFunction

    trace = CsvProvider(DATA)
    actual = StepFunction(trace.values)
    provider = HistoryForecast(trace)
    savings = []
    for day in pd.date_range("2020-06-01", "2020-06-30", freq="D", tz="UTC"):
        now = (day + pd.Timedelta(hours=17)).to_pydatetime()
        plan = plan_start(provider.forecast(now, now + 24 * H), now, 4 * H, now + 24 * H,
                          SchedulePolicy(min_saving=HISTORY_MIN_SAVING))
        assert plan.start + 4 * H <= now + 24 * H
        start = to_utc(plan.start)
        savings.append(1 - actual.mean(start, start + 4 * H) / actual.mean(to_utc(now), to_utc(now) + 4 * H))
    assert np.mean(savings) > 0.05
