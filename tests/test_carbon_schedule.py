"""plan_start: known answers on constructed series, and the deadline as a property."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuner.carbon.base import IntensitySeries
from tuner.carbon.schedule import SchedulePolicy, plan_start

T0 = datetime(2020, 3, 2, 0, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)


def hourly(values: list[float], start: datetime = T0) -> IntensitySeries:
    idx = pd.date_range(start, periods=len(values), freq="1h", tz="UTC")
    return IntensitySeries(pd.Series(values, index=idx, dtype=float), "test", "average")


def day_with(**hours: float) -> list[float]:
    values = [100.0] * 24
    for key, value in hours.items():
        values[int(key[1:])] = value
    return values


# ---------------------------------------------------------------- known answers


def test_one_hour_of_work_goes_to_the_lowest_hour():
    plan = plan_start(hourly(day_with(h5=10, h11=40)), T0, H, T0 + 24 * H)
    assert plan.start == T0 + 5 * H
    assert plan.expected_g_per_kwh == pytest.approx(10)
    assert plan.now_g_per_kwh == pytest.approx(100)
    assert plan.saving_fraction == pytest.approx(0.9)


def test_longer_work_follows_the_lowest_rolling_mean_not_the_lowest_point():
    # a one-hour dip to 10 at 05:00 versus a four-hour plateau at 40 from 10:00
    values = day_with(h5=10, h10=40, h11=40, h12=40, h13=40)
    plan = plan_start(hourly(values), T0, 4 * H, T0 + 24 * H)
    assert plan.start == T0 + 10 * H
    assert plan.expected_g_per_kwh == pytest.approx(40)
    assert plan.saving_fraction == pytest.approx(0.6)


def test_window_edges_between_steps_are_found_exactly():
    # 90 minutes of work over 30-minute-wide lows: best window straddles hour boundaries
    values = [100.0] * 48
    idx = pd.date_range(T0, periods=48, freq="30min", tz="UTC")
    values[20:23] = [10.0, 10.0, 10.0]  # 10:00-11:30
    series = IntensitySeries(pd.Series(values, index=idx), "test", "average")
    plan = plan_start(series, T0, timedelta(minutes=90), T0 + 24 * H)
    assert plan.start == T0 + timedelta(hours=10)
    assert plan.expected_g_per_kwh == pytest.approx(10)


def test_now_between_timestamps_uses_the_value_in_force():
    now = T0 + timedelta(minutes=30)
    plan = plan_start(hourly(day_with(h0=50, h1=100, h2=100)), now, timedelta(minutes=30),
                      now + 2 * H)
    assert plan.start == now  # 00:30-01:00 is still at 50, the lowest there is
    assert plan.now_g_per_kwh == pytest.approx(50)


def test_the_deadline_cuts_off_a_later_better_window():
    # 4 h of work, lows at 10:00-14:00, but the deadline is 12:00: best is 08:00-12:00
    values = day_with(h10=40, h11=40, h12=40, h13=40)
    plan = plan_start(hourly(values), T0, 4 * H, T0 + 12 * H)
    assert plan.start == T0 + 8 * H
    assert plan.expected_g_per_kwh == pytest.approx(70)


def test_ties_pick_the_earliest_start():
    plan = plan_start(hourly(day_with(h3=20, h7=20)), T0, H, T0 + 24 * H)
    assert plan.start == T0 + 3 * H


def test_flat_forecast_starts_now():
    plan = plan_start(hourly([80.0] * 24), T0, 2 * H, T0 + 24 * H)
    assert plan.start == T0
    assert plan.saving_fraction == 0
    assert "start now" in plan.reason


def test_margin_keeps_small_savings_from_causing_a_wait():
    series = hourly(day_with(h6=97))  # 3 % better at 06:00
    assert plan_start(series, T0, H, T0 + 24 * H).start == T0 + 6 * H
    plan = plan_start(series, T0, H, T0 + 24 * H, SchedulePolicy(min_saving=0.05))
    assert plan.start == T0
    assert "margin" in plan.reason


def test_work_that_cannot_fit_starts_now_and_says_so():
    plan = plan_start(hourly(day_with(h5=10)), T0, 30 * H, T0 + 24 * H)
    assert plan.start == T0
    assert "cannot finish by the deadline" in plan.reason


def test_a_forecast_shorter_than_the_work_does_not_justify_waiting():
    plan = plan_start(hourly([100, 10, 10]), T0, 6 * H, T0 + 24 * H)
    assert plan.start == T0
    assert "forecast covers 3 h" in plan.reason


def test_windows_beyond_the_forecast_are_not_chosen():
    # forecast ends after 06:00 (last value holds one step); 2 h of work may end by 06:00 only
    plan = plan_start(hourly([100, 100, 100, 100, 50, 10]), T0, 2 * H, T0 + 24 * H)
    assert plan.start == T0 + 4 * H
    assert plan.expected_g_per_kwh == pytest.approx(30)


def test_policy_none_starts_now():
    plan = plan_start(hourly(day_with(h5=10)), T0, H, T0 + 24 * H, SchedulePolicy("none"))
    assert plan.start == T0 and plan.saving_fraction == 0


def test_threshold_level_starts_at_the_first_time_under_it():
    values = day_with(h3=60, h5=10)
    policy = SchedulePolicy("threshold", level_g_per_kwh=70)
    plan = plan_start(hourly(values), T0, H, T0 + 24 * H, policy)
    assert plan.start == T0 + 3 * H  # the first hour under 70, not the lowest one
    assert plan.expected_g_per_kwh == pytest.approx(60)


def test_threshold_percentile_is_of_the_forecast_up_to_the_deadline():
    values = [float(v) for v in range(100, 52, -2)]  # 100, 98, ..., 54 over 24 h
    policy = SchedulePolicy("threshold", percentile=25)
    plan = plan_start(hourly(values), T0, H, T0 + 24 * H, policy)
    limit = np.percentile(values, 25)
    assert plan.start == T0 + int(np.argmax(np.array(values) <= limit)) * H
    assert "25th percentile" in plan.reason


def test_threshold_never_reached_starts_now():
    policy = SchedulePolicy("threshold", level_g_per_kwh=5)
    plan = plan_start(hourly(day_with(h5=10)), T0, H, T0 + 24 * H, policy)
    assert plan.start == T0
    assert "does not reach" in plan.reason


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "pause"}, "policy.kind"),
        ({"min_saving": 1.5}, "policy.min_saving"),
        ({"kind": "threshold"}, "level_g_per_kwh or percentile"),
        ({"kind": "threshold", "percentile": 120}, "policy.percentile"),
        ({"kind": "threshold", "level_g_per_kwh": -1}, "policy.level_g_per_kwh"),
    ],
)
def test_bad_policy_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SchedulePolicy(**kwargs)


def test_naive_times_and_negative_duration_are_rejected():
    series = hourly([1.0] * 24)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        plan_start(series, T0.replace(tzinfo=None), H, T0 + 24 * H)
    with pytest.raises(ValueError, match="duration must be >= 0"):
        plan_start(series, T0, -H, T0 + 24 * H)
    empty = IntensitySeries(pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype=float),
                            "empty", "average")
    with pytest.raises(ValueError, match="no values"):
        plan_start(empty, T0, H, T0 + 24 * H)
    with pytest.raises(ValueError, match="before now"):
        plan_start(series, T0 + 25 * H, H, T0 + 48 * H)  # a stale forecast is not one


# ---------------------------------------------------------------- properties

intensity = st.floats(min_value=0.0, max_value=1000.0, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(intensity, min_size=1, max_size=60),
    step_min=st.sampled_from([5, 15, 30, 60]),
    now_min=st.integers(min_value=-120, max_value=300),
    work_min=st.integers(min_value=0, max_value=2000),
    deadline_min=st.integers(min_value=0, max_value=3000),
    policy=st.sampled_from([SchedulePolicy(), SchedulePolicy(min_saving=0.1),
                            SchedulePolicy("threshold", percentile=30),
                            SchedulePolicy("threshold", level_g_per_kwh=200),
                            SchedulePolicy("none")]),
)
def test_start_is_never_before_now_and_work_always_meets_a_feasible_deadline(
        values, step_min, now_min, work_min, deadline_min, policy):
    idx = pd.date_range(T0, periods=len(values), freq=f"{step_min}min", tz="UTC")
    series = IntensitySeries(pd.Series(values, index=idx), "prop", "average")
    now = T0 + timedelta(minutes=now_min)
    work, deadline = timedelta(minutes=work_min), now + timedelta(minutes=deadline_min)
    hold = timedelta(minutes=step_min) if len(values) > 1 else H
    if now >= idx[-1] + hold:
        with pytest.raises(ValueError, match="before now"):
            plan_start(series, now, work, deadline, policy)
        return
    plan = plan_start(series, now, work, deadline, policy)
    assert plan.start >= now
    if work <= deadline - now:
        assert plan.start + work <= deadline
    else:
        assert plan.start == now and "cannot finish" in plan.reason
    assert np.isfinite(plan.expected_g_per_kwh) and np.isfinite(plan.now_g_per_kwh)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(intensity, min_size=4, max_size=48),
    work_steps=st.integers(min_value=1, max_value=6),
    deadline_steps=st.integers(min_value=1, max_value=48),
)
def test_flexible_start_matches_brute_force_over_the_grid(values, work_steps, deadline_steps):
    # with every timestamp on a whole step, the best window starts on the grid
    series = hourly(values)
    work, deadline = work_steps * H, T0 + deadline_steps * H
    plan = plan_start(series, T0, work, deadline)
    last = min(deadline_steps, len(values)) - work_steps
    if last < 0:
        assert plan.start == T0
        return
    windows = [np.mean(values[i:i + work_steps]) for i in range(last + 1)]
    assert plan.expected_g_per_kwh == pytest.approx(min(windows), rel=1e-9, abs=1e-9)
    assert plan.expected_g_per_kwh <= plan.now_g_per_kwh + 1e-9
