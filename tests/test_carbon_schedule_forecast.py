"""The history-only forecaster: routine profile, fading anomaly, and no peeking at the future."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries
from tuner.carbon.forecast import HISTORY_MIN_SAVING, HistoryForecast, ProfileForecaster
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


def test_history_forecast_provider_plans_into_the_routine_low():
    provider = HistoryForecast(SeriesProvider(daily_pattern(30)))
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
