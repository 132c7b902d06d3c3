"""Re-checks on a wait under way (tuner.carbon.guard): stop once waiting no longer pays.

Each re-plan compares the windows ahead with starting *now*; these checks also look at
what happened since the wait began: the window now is already as clean as the one waited
for, or the intensity has run well above the forecast the wait was planned on.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from tests.test_carbon_gate import Counting, FakeClock, SeriesProvider
from tuner.carbon.base import IntensitySeries
from tuner.carbon.gate import CarbonGate
from tuner.carbon.guard import WaitGuard, forecast_miss, stop_reason
from tuner.carbon.schedule import SavingRisk, SchedulePolicy

H = timedelta(hours=1)
NOW = datetime(2020, 3, 15, 9, tzinfo=timezone.utc)


def _hourly(values, start=NOW) -> pd.Series:
    return pd.Series(values, index=pd.date_range(start, periods=len(values), freq="1h"),
                     dtype=float)


def test_forecast_miss_is_the_observed_mean_over_the_planned_one_since_the_wait_began() -> None:
    planned = _hourly([100.0] * 10)
    observed = _hourly([110.0, 130.0, 100.0])
    assert forecast_miss(planned, observed, NOW, NOW + 2 * H) == pytest.approx(0.2)
    assert forecast_miss(planned, observed, NOW, NOW + 3 * H) == pytest.approx(0.4 / 3)
    # a span either series does not cover gives no verdict, rather than one on a part of it
    assert forecast_miss(planned, observed, NOW, NOW + 5 * H) is None
    assert forecast_miss(planned, observed, NOW - H, NOW + H) is None
    assert forecast_miss(planned, observed, NOW, NOW) is None


def test_stop_reason_takes_the_target_or_ends_a_failing_forecast() -> None:
    guard = WaitGuard(divergence=0.1)
    assert "as clean as" in stop_reason(guard, target_g=80.0, now_g=79.0, miss=None)
    assert "above its forecast" in stop_reason(guard, target_g=80.0, now_g=100.0, miss=0.15)
    assert stop_reason(guard, target_g=80.0, now_g=100.0, miss=0.05) is None
    assert stop_reason(WaitGuard(), target_g=80.0, now_g=100.0, miss=0.5) is None  # check off
    assert stop_reason(WaitGuard(take_target=False), target_g=80.0, now_g=70.0, miss=None) is None
    with pytest.raises(ValueError, match="guard.divergence must be a fraction >= 0"):
        WaitGuard(divergence=-0.1)


class Optimist(SeriesProvider):
    """Always forecasts a flat 100 g/kWh with a 50 % dip 10 h after the first plan, and
    a small measured error; what really happens (``values``, its history) is ``actual``."""

    def saving_risk(self, now, deadline, work, confidence):
        offsets = np.arange(0.0, 24 * 3600.0, 3600.0)
        return SavingRisk(offsets, np.full((10, len(offsets)), -0.02), confidence)

    def forecast(self, start, end):
        hours = pd.date_range(self.clock(), periods=30, freq="1h")
        values = [50.0 if t == NOW + 10 * H else self.level(t) for t in hours]
        return IntensitySeries(pd.Series(values, index=hours), "optimist", "average")

    def level(self, t) -> float:
        return 100.0


def _launch(provider, guard) -> datetime:
    clock = provider.clock
    gate = CarbonGate(Counting(), provider, deadline=NOW + 24 * H, clock=clock,
                      policy=SchedulePolicy(confidence=0.9), work=lambda: H, replan_every=H,
                      guard=guard)
    while gate.suggest("a") is None:
        clock.advance(timedelta(minutes=15))
    return clock.now


@pytest.mark.parametrize(("actual", "guard", "launch"), [
    (130.0, WaitGuard(divergence=0.1), NOW + H),  # 30 % over its forecast: stop the loss now
    (130.0, None, NOW + 10 * H),  # the previous gate: chases the promised dip
    (105.0, WaitGuard(divergence=0.1), NOW + 10 * H),  # 5 % over: within the band, go on
])
def test_a_wait_ends_once_the_intensity_runs_above_its_forecast(actual, guard, launch) -> None:
    clock = FakeClock(NOW)
    provider = Optimist(_hourly([actual] * 40, NOW - 5 * H), clock)
    assert _launch(provider, guard) == launch


class Falling(Optimist):
    """From the second plan on, the forecast sees the present at the dip's level already,
    and the dip itself 10 g/kWh deeper still."""

    def forecast(self, start, end):
        if self.clock() < NOW + H:
            return super().forecast(start, end)
        hours = pd.date_range(self.clock(), periods=30, freq="1h")
        values = [40.0 if t == NOW + 10 * H else 50.0 for t in hours]
        return IntensitySeries(pd.Series(values, index=hours), "falling", "average")


@pytest.mark.parametrize(("guard", "launch"), [(WaitGuard(), NOW + H), (None, NOW + 10 * H)])
def test_a_wait_ends_once_the_window_now_is_as_clean_as_the_one_waited_for(guard, launch) -> None:
    clock = FakeClock(NOW)
    provider = Falling(_hourly([100.0] * 40, NOW - 5 * H), clock)
    # the re-plan alone would now bet on the deeper dip (20 % under the window now); the
    # check takes the saving the wait was for, which is here already
    assert _launch(provider, guard) == launch


def test_a_history_study_gets_the_wait_guard() -> None:
    from ray.tune.search import Searcher

    from tests.test_carbon_risk import _cfg
    from tuner.carbon.forecast import HISTORY_GUARD, HISTORY_REPLAN
    from tuner.carbon.static import StaticProvider
    from tuner.carbon.wiring import gate_searcher
    from tuner.study.ledger import EnergyLedger

    ledger = EnergyLedger(0.2, watts_per_core=10.0, metric="accuracy")
    cfg = _cfg(carbon={"policy": "flexible-start", "deadline": "24h", "forecast": "history"},
               max_concurrent_trials=1, energy={"watts_per_core": 10.0})
    gate = gate_searcher(Searcher(), StaticProvider("DE"), cfg, ledger, NOW)
    # the guard, and the re-plan cadence benchmarks/carbon_shift.py replays
    assert (gate.guard, gate.replan_every) == (HISTORY_GUARD, HISTORY_REPLAN)
    plain = gate_searcher(Searcher(), StaticProvider("DE"), _cfg(max_concurrent_trials=1),
                          ledger, NOW)
    assert (plain.guard, plain.replan_every) == (None, timedelta(minutes=15))  # API forecasts


def _shift_bench():
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location("carbon_shift_bench", folder / "carbon_shift.py")
        bench = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = bench  # its dataclasses look their module up there
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(folder))
    return bench


def test_the_replay_reads_a_guard_and_chooses_it_leaving_the_scored_trace_out() -> None:
    bench = _shift_bench()
    assert bench.parse_guard("none") is None
    assert bench.parse_guard("target") == WaitGuard()
    assert bench.parse_guard("0.1") == WaitGuard(divergence=0.1)
    for bad in ("x", "-1"):
        with pytest.raises(SystemExit, match="--guard: expected none, target or a fraction"):
            bench.parse_guard(bad)

    def case(guard: str, daily: list[float]):
        arrays = {k: np.array([0.1] * len(daily)) for k in bench.SCHEDULES}
        arrays["history"] = np.array(daily)
        return bench.CaseResult("DE", 9, 1, arrays, 1.0, guard=guard)

    # no setting is safe (a day at -30 %): the fewest days worse wins, then the mildest worst day
    results = [case("none", [0.2] * 8 + [-0.3, -0.01]), case("target", [0.0] * 9 + [-0.3]),
               case("0.1", [0.0] * 9 + [-0.26])]
    assert bench.choose(results) == (0.9, "0.1")
    # a safe setting wins on its mean saving
    results.append(case("0.2", [0.05] * 10))
    assert bench.choose(results) == (0.9, "0.2")
