"""Risk-aware waiting and planning on the study's real length.

A history forecast's promised saving is only worth waiting for when it beats that
forecast's own past error at the same lead time; every re-plan while waiting re-checks
it; and before any trial has finished, the study's work is estimated from its budget,
trial cap and concurrency, and the plan says so.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_carbon_gate import Counting, FakeClock, SeriesProvider
from tuner.carbon.base import IntensitySeries
from tuner.carbon.forecast import HistoryForecast
from tuner.carbon.gate import CarbonGate
from tuner.carbon.schedule import SavingRisk, SchedulePolicy, plan_start

H = timedelta(hours=1)
DAYS = 80
NOW = datetime(2020, 3, 15, 9, tzinfo=timezone.utc)  # 74 days into the trace


def _trace(routine: float, weather: float, seed: int = 1, phi: float = 0.995) -> pd.Series:
    """Hourly intensity: a daily shape with its low at 03:00 (``routine`` g/kWh deep)
    plus a random anomaly (``weather`` g/kWh standard deviation) that persists from hour
    to hour by ``phi``: slow weather, whose next turn history cannot tell."""
    idx = pd.date_range("2020-01-01", periods=DAYS * 24, freq="1h", tz="UTC")
    hour = idx.hour.to_numpy()
    shape = 400.0 - routine * np.exp(-0.5 * ((hour - 3) / 2.0) ** 2)
    rng = np.random.default_rng(seed)
    anomaly = np.zeros(len(idx))
    for i in range(1, len(idx)):
        anomaly[i] = phi * anomaly[i - 1] + rng.normal(0.0, weather * np.sqrt(1 - phi**2))
    return pd.Series(np.clip(shape + anomaly, 1.0, None), index=idx)


def _history(values: pd.Series) -> HistoryForecast:
    return HistoryForecast(SeriesProvider(values, FakeClock(NOW)))


def _plan(provider: HistoryForecast, confidence: float | None, work: timedelta = 2 * H):
    deadline = NOW + 24 * H
    forecast = provider.forecast(NOW, deadline)
    risk = None if confidence is None else provider.saving_risk(NOW, deadline, work, confidence)
    policy = SchedulePolicy(confidence=confidence)
    return plan_start(forecast, NOW, work, deadline, policy, risk), risk


def test_a_routine_trace_has_a_small_measured_error_and_the_plan_waits_for_its_dip() -> None:
    provider = _history(_trace(routine=200.0, weather=0.0))
    plan, risk = _plan(provider, 0.9)
    assert risk is not None and risk.samples == 28  # the last 28 days at 09:00
    assert np.nanmax(np.abs(risk.errors)) < 0.01
    assert plan.start == NOW + 17 * H  # 02:00-04:00 tomorrow, the dip's centre
    assert plan.saving_fraction > 0.3 and "with 90% confidence" in plan.reason


def test_a_weather_driven_trace_starts_now_where_a_risk_neutral_plan_waits() -> None:
    provider = _history(_trace(routine=20.0, weather=80.0))
    neutral, _ = _plan(provider, None)
    careful, risk = _plan(provider, 0.9)
    assert neutral.start > NOW, "a risk-neutral plan chases the promised saving"
    assert careful.start == NOW
    assert "could erase it" in careful.reason and "28 past days" in careful.reason
    assert risk is not None and np.nanquantile(risk.errors[:, -1], 0.1) < -0.05


def test_the_lower_bound_is_the_error_quantile_and_never_waits_on_what_was_not_measured() -> None:
    offsets = np.array([0.0, 3600.0, 7200.0])
    errors = np.array([[0.0, e, np.nan] for e in np.linspace(-0.10, 0.08, 10)])
    risk = SavingRisk(offsets, errors, confidence=0.9)
    lower = risk.lower(np.array([0.0, 1800.0, 3600.0, 7200.0, 9000.0]))
    assert lower[0] == 0.0
    assert lower[2] == pytest.approx(np.quantile(np.linspace(-0.10, 0.08, 10), 0.1))
    assert lower[1] == pytest.approx(lower[2] / 2)  # interpolated in lead time
    assert lower[3] == -np.inf and lower[4] == -np.inf  # no measurement that far ahead
    few = SavingRisk(offsets, errors[:3], confidence=0.9)
    assert few.lower(np.array([3600.0]))[0] == -np.inf  # 3 samples are not a measurement
    with pytest.raises(ValueError, match="confidence"):
        SavingRisk(offsets, errors, confidence=1.0)


class Promising(SeriesProvider):
    """A forecast whose dip shrinks after the first hour, and a measured error of 10 %."""

    def saving_risk(self, now, deadline, work, confidence):
        offsets = np.arange(0.0, 24 * 3600.0, 3600.0)
        return SavingRisk(offsets, np.full((10, len(offsets)), -0.10), confidence)

    def forecast(self, start, end):
        hours = pd.date_range(self.clock(), periods=30, freq="1h")
        dip = 0.5 if self.clock() < NOW + H else 0.95  # the dip fades from the second plan on
        values = [100.0 * (dip if t == NOW + 10 * H else 1.0) for t in hours]
        return IntensitySeries(pd.Series(values, index=hours), "promising", "average")


@pytest.mark.parametrize(("confidence", "launch"), [(0.9, NOW + H), (None, NOW + 10 * H)])
def test_waiting_is_rechecked_and_ends_as_soon_as_it_no_longer_pays(confidence, launch) -> None:
    clock = FakeClock(NOW)
    provider = Promising(pd.Series(dtype=float), clock)
    gate = CarbonGate(Counting(), provider, deadline=NOW + 24 * H, clock=clock,
                      policy=SchedulePolicy(confidence=confidence), work=lambda: H,
                      replan_every=H)
    while gate.suggest("a") is None:
        clock.advance(timedelta(minutes=15))
    # risk-aware: 5 % no longer clears a 10 % error at the first re-check, so it launches;
    # risk-neutral: 5 % is still a saving, so it waits for it
    assert clock.now == launch


# ------------------------------------------------------------------ the study's length


def _cfg(**extra):
    from tuner.config import load_config

    return load_config({
        "objective": "tests.objectives_for_tests:quadratic",
        "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "budget_kwh": 0.2,
        "carbon": {"policy": "flexible-start", "deadline": "24h"},
        **extra,
    })


def test_expected_work_from_budget_trial_cap_and_concurrency() -> None:
    from tuner.carbon.wiring import expected_work

    # 0.2 kWh at 2 trials x 1 CPU x 10 W: 10 h
    work, basis = expected_work(_cfg(), at_once=2, watts_per_core=10.0)
    assert work == timedelta(hours=10) and "budget 0.2 kWh / (2 trial(s) at once x 10 W)" in basis
    # a trial cap of 1 runs one at a time: twice as long
    work, _ = expected_work(_cfg(max_trials=1), at_once=2, watts_per_core=10.0)
    assert work == timedelta(hours=20)
    work, _ = expected_work(_cfg(resources_per_trial={"cpu": 4}), at_once=1, watts_per_core=5.0)
    assert work == timedelta(hours=10)
    gpu = _cfg(resources_per_trial={"cpu": 1, "gpu": 1})
    work, basis = expected_work(gpu, at_once=1, watts_per_core=10.0)
    assert work == timedelta(hours=1) and "no power figure for GPU trials" in basis
    with_override = _cfg(resources_per_trial={"cpu": 1, "gpu": 1},
                         energy={"overrides": {"gpu": {"watts": 190.0}}})
    work, _ = expected_work(with_override, at_once=1, watts_per_core=10.0)
    assert work == timedelta(hours=1)  # 0.2 kWh / 200 W


def test_the_gate_plans_on_the_expected_work_and_says_so() -> None:
    from tests.test_carbon_gate import day_with, hourly

    clock = FakeClock(datetime(2020, 3, 2, tzinfo=timezone.utc))
    provider = SeriesProvider(hourly(day_with(h10=40, h11=40, h12=40, h13=40)), clock)
    gate = CarbonGate(Counting(), provider, deadline=clock.now + 24 * H, clock=clock,
                      work=lambda: None, assumed_work=4 * H,
                      assumed_basis="4 h expected: budget 0.2 kWh / (1 trial(s) at once x 50 W)")
    assert gate.suggest("a") is None
    assert gate.plan.start == clock.now + 10 * H  # four hours of work fit the 4-hour dip
    assert "[work: 4 h expected: budget 0.2 kWh" in gate.plan.reason
    assert gate.report()["carbon_work_basis"].startswith("4 h expected")


def test_an_expected_work_past_the_deadline_launches_but_does_not_stop_waiting_for_good() -> None:
    from tests.test_carbon_gate import day_with, hourly

    clock = FakeClock(datetime(2020, 3, 2, tzinfo=timezone.utc))
    provider = SeriesProvider(hourly(day_with(h10=40)), clock)
    measured: dict[str, timedelta | None] = {"work": None}
    gate = CarbonGate(Counting(), provider, deadline=clock.now + 24 * H, clock=clock,
                      work=lambda: measured["work"], assumed_work=50 * H,
                      assumed_basis="50 h expected: budget")
    assert gate.suggest("a") == {"i": 1}  # 50 h cannot be shifted within 24 h
    assert gate.released_reason is None and "50 h expected" in gate.plan.reason
    measured["work"] = H  # the first trial finished: the study is short
    clock.advance(timedelta(minutes=20))
    assert gate.suggest("b") is None and gate.plan.start == datetime(2020, 3, 2, 10, tzinfo=timezone.utc)


# ------------------------------------------------------------------ carbon plan --forecast history


def _csv(tmp_path: Path, values: pd.Series) -> Path:
    path = tmp_path / "trace.csv"
    pd.DataFrame({"Time": values.index.strftime("%Y-%m-%d %H:%M"),
                  "Carbon Intensity": values.round(3).to_numpy()}).to_csv(path, index=False)
    return path


def test_carbon_plan_with_a_history_forecast(tmp_path: Path, capsys) -> None:
    from tuner.cli import main

    path = _csv(tmp_path, _trace(routine=200.0, weather=0.0))
    assert main(["carbon", "plan", "--provider", "csv", "--csv-path", str(path), "--duration", "2h",
                 "--deadline", "24h", "--at", "2020-03-15T09:00", "--forecast", "history"]) == 0
    out = capsys.readouterr().out
    assert "start: 2020-03-16 02:00 UTC (in 17.0 h)" in out
    assert "with 90% confidence" in out and "profile forecast from history" in out
    assert "note:" not in out


def test_carbon_plan_says_when_the_forecast_is_shorter_than_the_deadline(tmp_path: Path, capsys) -> None:
    from tuner.cli import main

    path = _csv(tmp_path, _trace(routine=200.0, weather=0.0))
    assert main(["carbon", "plan", "--provider", "csv", "--csv-path", str(path), "--duration", "2h",
                 "--deadline", "24h", "--at", "2020-03-20T09:00"]) == 0
    out = capsys.readouterr().out
    assert "note: the forecast covers 15.0 h of the 24h to the deadline" in out


class Spread(Promising):
    """Past errors from -10 % to +10 %: a 10 % lower bound, a median of 0."""

    later_dip = 0.95

    def saving_risk(self, now, deadline, work, confidence):
        offsets = np.arange(0.0, 24 * 3600.0, 3600.0)
        errors = np.repeat(np.linspace(-0.10, 0.10, 21)[:, None], len(offsets), axis=1)
        return SavingRisk(offsets, errors, confidence)

    def forecast(self, start, end):
        hours = pd.date_range(self.clock(), periods=30, freq="1h")
        dip = 0.5 if self.clock() < NOW + H else self.later_dip
        values = [100.0 * (dip if t == NOW + 10 * H else 1.0) for t in hours]
        return IntensitySeries(pd.Series(values, index=hours), "spread", "average")


@pytest.mark.parametrize(("later_dip", "launch"), [(0.95, NOW + 10 * H), (1.0, NOW + H)])
def test_a_wait_under_way_goes_on_while_it_still_pays_as_expected(later_dip, launch) -> None:
    clock = FakeClock(NOW)
    provider = Spread(pd.Series(dtype=float), clock)
    provider.later_dip = later_dip
    gate = CarbonGate(Counting(), provider, deadline=NOW + 24 * H, clock=clock,
                      policy=SchedulePolicy(confidence=0.9), work=lambda: H, replan_every=H)
    while gate.suggest("a") is None:
        clock.advance(timedelta(minutes=15))
    # 5 % would not start a wait at 90 % (its lower bound is -5 %), but a wait already under
    # way goes on for it (median error 0); with nothing left to gain it launches at the re-check
    assert clock.now == launch


def test_a_history_study_gets_the_risk_aware_policy_and_its_default_confidence() -> None:
    from ray.tune.search import Searcher

    from tuner.carbon.forecast import HISTORY_CONFIDENCE
    from tuner.carbon.static import StaticProvider
    from tuner.carbon.wiring import gate_searcher
    from tuner.config import CarbonSettings
    from tuner.study.ledger import EnergyLedger

    assert CarbonSettings().confidence == HISTORY_CONFIDENCE  # one default, in two places
    ledger = EnergyLedger(0.2, watts_per_core=10.0, metric="accuracy")
    cfg = _cfg(carbon={"policy": "flexible-start", "deadline": "24h", "forecast": "history"},
               max_concurrent_trials=2, energy={"watts_per_core": 10.0})
    gate = gate_searcher(Searcher(), StaticProvider("DE"), cfg, ledger, NOW)
    assert isinstance(gate.provider, HistoryForecast)
    assert gate.policy.confidence == HISTORY_CONFIDENCE
    assert (gate.assumed_work, gate.assumed_basis) == (
        timedelta(hours=10), "10 h expected: budget 0.2 kWh / (2 trial(s) at once x 10 W)")
    plain = gate_searcher(Searcher(), StaticProvider("DE"), _cfg(max_concurrent_trials=1), ledger, NOW)
    assert plain.policy.confidence is None  # a provider's own forecast is not backtested
