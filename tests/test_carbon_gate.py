"""CarbonGate: waiting, re-planning and the deadline, on a fake clock with a series provider."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ray.tune.search import Searcher

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries
from tuner.carbon.gate import CarbonGate, remaining_work
from tuner.carbon.schedule import SchedulePolicy
from tuner.carbon.series import StepFunction, to_utc, window

T0 = datetime(2020, 3, 2, 0, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, span: timedelta) -> None:
        self.now += span


class SeriesProvider(IntensityProvider):
    """A provider over an in-memory series; ``forecast`` returns the series itself (a perfect
    forecast) and counts its calls. ``values`` can be replaced to model a new forecast."""

    name, signal = "series", "average"

    def __init__(self, values: pd.Series, clock: FakeClock) -> None:
        self.values = values
        self.clock = clock
        self.forecast_calls = 0

    def current(self) -> IntensityReading:
        now = to_utc(self.clock())
        return IntensityReading(now.to_pydatetime(), StepFunction(self.values).mean(now, now),
                                self.name, self.signal)

    def history(self, start: datetime, end: datetime) -> IntensitySeries:
        return IntensitySeries(window(self.values, to_utc(start), to_utc(end)), self.name, self.signal)

    def forecast(self, start: datetime, end: datetime) -> IntensitySeries:
        self.forecast_calls += 1
        return self.history(start, end)


class BrokenProvider(SeriesProvider):
    def forecast(self, start: datetime, end: datetime) -> IntensitySeries:
        raise ConnectionError("carbon API down")


class Counting(Searcher):
    """The smallest real searcher: numbered configs, optionally a fixed number of them."""

    def __init__(self, limit: int | None = None) -> None:
        super().__init__(metric=None, mode=None)
        self.limit, self.count, self.completed = limit, 0, []
        self.finish_reason = None

    def suggest(self, trial_id: str):
        if self.limit is not None and self.count >= self.limit:
            self.finish_reason = "all done"
            return Searcher.FINISHED
        self.count += 1
        return {"i": self.count}

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        self.completed.append(trial_id)


def hourly(values: list[float]) -> pd.Series:
    return pd.Series(values, index=pd.date_range(T0, periods=len(values), freq="1h", tz="UTC"),
                     dtype=float)


def day_with(**hours: float) -> list[float]:
    values = [100.0] * 48
    for key, value in hours.items():
        values[int(key[1:])] = value
    return values


def make_gate(values: list[float], clock: FakeClock, **kwargs) -> tuple[CarbonGate, SeriesProvider]:
    provider = SeriesProvider(hourly(values), clock)
    kwargs.setdefault("deadline", T0 + 24 * H)
    return CarbonGate(Counting(), provider, clock=clock, **kwargs), provider


def step_until_launch(gate: CarbonGate, clock: FakeClock, step=timedelta(minutes=5),
                      limit=timedelta(days=3)) -> datetime:
    end = clock.now + limit
    while clock.now < end:
        if gate.suggest("t") is not None:
            return clock.now
        clock.advance(step)
    raise AssertionError("gate never launched")


def test_gate_waits_for_the_planned_window_then_launches():
    clock = FakeClock()
    gate, _ = make_gate(day_with(h6=20), clock, work=lambda: H)
    assert gate.suggest("a") is None
    assert gate.plan.start == T0 + 6 * H
    launched = step_until_launch(gate, clock)
    assert launched == T0 + 6 * H
    assert gate.waited_s == pytest.approx(6 * 3600)
    assert len(gate.waits) == 1 and "saves 80.0%" in gate.waits[0].reason
    report = gate.report()
    assert report["carbon_waited_s"] == pytest.approx(6 * 3600)
    assert report["carbon_policy"] == "flexible-start" and report["carbon_released"] is None
    # once launched, the window is still the best: later suggestions launch too
    assert gate.suggest("b") == {"i": 2}


def test_waited_time_counts_a_wait_still_under_way():
    clock = FakeClock()
    gate, _ = make_gate(day_with(h6=20), clock, work=lambda: H)
    assert gate.suggest("a") is None
    clock.advance(2 * H)
    assert gate.waited_s == pytest.approx(2 * 3600)


def test_provider_is_queried_at_most_every_replan_interval():
    clock = FakeClock()
    gate, provider = make_gate(day_with(h6=20), clock, work=lambda: H,
                               replan_every=timedelta(minutes=30))
    for _ in range(12):  # one hour in 5-minute polls
        assert gate.suggest("a") is None
        clock.advance(timedelta(minutes=5))
    assert provider.forecast_calls == 2
    assert gate.plans == 2


def test_a_new_forecast_moves_the_launch():
    clock = FakeClock()
    gate, provider = make_gate(day_with(h10=20), clock, work=lambda: H,
                               replan_every=timedelta(minutes=15))
    assert gate.suggest("a") is None and gate.plan.start == T0 + 10 * H
    clock.advance(H)
    provider.values = hourly(day_with(h2=5, h10=20))  # the new forecast sees a deeper low at 02:00
    assert gate.suggest("a") is None
    assert gate.plan.start == T0 + 2 * H
    assert step_until_launch(gate, clock) == T0 + 2 * H


def test_margin_decides_whether_to_wait_not_when_to_stop_waiting():
    # from 100 g, the 80 g hour at 06:00 clears a 10 % margin; at 05:00 (85 g) it no longer
    # would, but the gate is already waiting and the lowest window is still an hour away
    clock = FakeClock()
    gate, _ = make_gate(day_with(h5=85, h6=80), clock, work=lambda: H,
                        policy=SchedulePolicy(min_saving=0.10))
    assert step_until_launch(gate, clock) == T0 + 6 * H
    small, _ = make_gate(day_with(h6=95), FakeClock(), work=lambda: H,
                         policy=SchedulePolicy(min_saving=0.10))
    assert small.suggest("a") == {"i": 1}  # 5 % is not worth leaving run-now for


def test_gate_stops_waiting_once_the_deadline_nears():
    clock = FakeClock()
    work = {"left": H}
    gate, _ = make_gate(day_with(h20=10), clock, work=lambda: work["left"])
    assert gate.suggest("a") is None and gate.plan.start == T0 + 20 * H
    clock.advance(4 * H)
    work["left"] = 20 * H  # the first trials showed the study is much longer than assumed
    assert gate.suggest("a") == {"i": 1}
    assert "deadline near" in gate.released_reason
    work["left"] = H  # released for good, even if the estimate shrinks again
    assert gate.suggest("b") == {"i": 2}


def test_unknown_work_is_planned_with_the_assumed_duration():
    clock = FakeClock()
    values = day_with(h5=10, h10=40, h11=40, h12=40, h13=40)
    gate, _ = make_gate(values, clock, assumed_work=4 * H)
    assert gate.suggest("a") is None
    assert gate.plan.start == T0 + 10 * H


def test_zero_work_left_is_not_mistaken_for_unknown():
    clock = FakeClock()
    gate, _ = make_gate(day_with(h5=10), clock, work=lambda: timedelta(0),
                        assumed_work=30 * H)
    assert gate.suggest("a") is None  # 30 h assumed would have released at once
    assert gate.plan.start == T0 + 5 * H


def test_provider_failure_launches_at_once_with_a_warning(caplog):
    clock = FakeClock()
    provider = BrokenProvider(hourly(day_with(h5=10)), clock)
    gate = CarbonGate(Counting(), provider, deadline=T0 + 24 * H, clock=clock)
    with caplog.at_level(logging.WARNING, logger="tuner.carbon.gate"):
        assert gate.suggest("a") == {"i": 1}
    assert "carbon API down" in caplog.text
    assert "forecast unavailable" in gate.plan.reason
    assert gate.waited_s == 0


def test_policy_none_never_waits_nor_asks_the_provider():
    clock = FakeClock()
    gate, provider = make_gate(day_with(h5=10), clock, policy=SchedulePolicy("none"))
    assert gate.suggest("a") == {"i": 1}
    assert provider.forecast_calls == 0


def test_threshold_policy_launches_when_intensity_drops_under_the_level():
    clock = FakeClock()
    gate, _ = make_gate(day_with(h3=60, h5=10), clock, work=lambda: H,
                        policy=SchedulePolicy("threshold", level_g_per_kwh=70))
    assert step_until_launch(gate, clock) == T0 + 3 * H


def test_inner_results_and_finish_pass_through():
    clock = FakeClock()
    provider = SeriesProvider(hourly([50.0] * 48), clock)
    inner = Counting(limit=1)
    gate = CarbonGate(inner, provider, deadline=T0 + 24 * H, clock=clock)
    assert gate.set_search_properties("loss", "min", {}) is True
    assert gate.suggest("a") == {"i": 1}
    assert gate.suggest("b") == Searcher.FINISHED
    assert gate.finish_reason == "all done"
    gate.on_trial_complete("a", {"loss": 1.0})
    assert inner.completed == ["a"]


def test_bad_gate_settings_name_the_field():
    clock = FakeClock()
    provider = SeriesProvider(hourly([1.0] * 24), clock)
    with pytest.raises(ValueError, match="carbon.deadline must be timezone-aware"):
        CarbonGate(Counting(), provider, deadline=datetime(2020, 3, 3))
    with pytest.raises(ValueError, match="carbon.replan_every"):
        CarbonGate(Counting(), provider, deadline=T0 + H, replan_every=timedelta(0))


def test_remaining_work_is_median_duration_times_rounds():
    assert remaining_work([], 5, 1) is None
    assert remaining_work([60.0], None, 1) is None
    assert remaining_work([60.0, 100.0, 600.0], 5, 2) == timedelta(seconds=100 * 3)
    assert remaining_work([60.0], 0, 2) == timedelta(0)
    with pytest.raises(ValueError, match="concurrency"):
        remaining_work([60.0], 1, 0)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(min_value=1, max_value=800), min_size=24, max_size=60),
    work_min=st.integers(min_value=0, max_value=20 * 60),
    deadline_h=st.integers(min_value=1, max_value=30),
    replan_min=st.sampled_from([5, 15, 60]),
    policy=st.sampled_from([SchedulePolicy(), SchedulePolicy("threshold", percentile=10)]),
)
def test_a_feasible_deadline_is_always_met(values, work_min, deadline_h, replan_min, policy):
    """Polled every 5 minutes, the gate launches early enough to finish by the deadline."""
    clock = FakeClock()
    work = timedelta(minutes=work_min)
    gate, _ = make_gate(values, clock, work=lambda: work, deadline=T0 + deadline_h * H,
                        replan_every=timedelta(minutes=replan_min), policy=policy)
    launched = step_until_launch(gate, clock)
    if work <= deadline_h * H:
        # polling granularity is the only slack: at most one poll past the latest start
        assert launched + work <= gate.deadline + timedelta(minutes=5)
        assert launched <= max(T0, gate.deadline - work) + timedelta(minutes=5)
    else:
        assert launched == T0


def test_console_shows_a_wait_when_it_starts_while_it_lasts_and_when_it_ends():
    clock, lines = FakeClock(), []
    gate, _ = make_gate(day_with(h6=20), clock, work=lambda: H, notify=lines.append)
    assert gate.suggest("a") is None
    assert lines == ["[greentune] carbon: holding trial launches for 6 h (until 06:00 UTC): lowest mean "
                     "intensity over 1 h of work starts in 6 h (saves 80.0%) [work: 1 h measured on finished trials]"]
    clock.advance(timedelta(seconds=30))
    assert gate.suggest("a") is None and len(lines) == 1  # nothing new within a minute
    clock.advance(timedelta(seconds=30))
    assert gate.suggest("a") is None
    assert lines[-1] == "[greentune] carbon: launches held for 1 min so far, 5.98 h to go (until 06:00 UTC)"
    step_until_launch(gate, clock, step=timedelta(minutes=1))
    assert len(lines) == 2 + 6 * 60 - 1  # one progress line a minute
    assert lines[-1] == "[greentune] carbon: launching trials after a 6 h wait"


def test_console_says_when_the_deadline_ends_the_wait():
    clock, lines = FakeClock(), []
    gate, _ = make_gate(day_with(h20=20), clock, work=lambda: 3 * H, deadline=T0 + 24 * H, notify=lines.append)
    assert gate.suggest("a") is None
    clock.now = T0 + 21 * H + timedelta(minutes=1)
    assert gate.suggest("a") is not None
    assert lines[-2].startswith("[greentune] carbon: deadline near: 3 h of work left")
    assert lines[-1] == "[greentune] carbon: launching trials after a 21 h wait"
