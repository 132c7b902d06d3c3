"""CO2 accounting against hand-computed values: energy per time slice x that slice's
intensity x PUE, the study's counterfactual, and the ledger's energy timeline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tuner.carbon import CsvProvider, IntensitySeries, StaticProvider
from tuner.carbon.accounting import CarbonAccountant, clean_timeline, trial_co2
from tuner.carbon.fallback import FallbackProvider
from tuner.study.ledger import EnergyLedger
from tuner.study.record import TrialRecord, is_info_key

T0 = pd.Timestamp("2020-06-01 00:00Z").timestamp()
H = 3600.0


def _hourly(*values: float) -> IntensitySeries:
    idx = pd.date_range("2020-06-01 00:00Z", periods=len(values), freq="1h")
    return IntensitySeries(pd.Series(values, index=idx, dtype=float), "test", "average")


def test_energy_in_each_hour_meets_that_hours_intensity() -> None:
    # 0.9 kWh in the first hour at 100 g/kWh, 0.1 kWh in the second at 300:
    # 90 + 30 = 120 g. Average power x mean intensity would claim 1.0 x 200 = 200 g.
    timeline = [(T0, 0.0), (T0 + H, 0.9), (T0 + 2 * H, 1.0)]
    carbon = trial_co2(timeline, _hourly(100, 300))
    assert carbon.co2_kg == pytest.approx(0.120)
    assert carbon.mean_g_per_kwh == pytest.approx(120.0)
    assert carbon.energy_kwh == pytest.approx(1.0)
    assert trial_co2(timeline, _hourly(100, 300), pue=1.5).co2_kg == pytest.approx(0.180)


def test_heartbeats_that_straddle_intensity_steps() -> None:
    # heartbeats at 0, 20 min, 80 min, 120 min; intensity 100 then 300 from 60 min.
    # segment 1 (0-20 min):  0.2 kWh x 100                      = 20 g
    # segment 2 (20-80 min): 0.6 kWh x (40 x 100 + 20 x 300)/60 = 0.6 x 166.67 = 100 g
    # segment 3 (80-120 min): 0.2 kWh x 300                     = 60 g
    m = 60.0
    timeline = [(T0, 0.0), (T0 + 20 * m, 0.2), (T0 + 80 * m, 0.8), (T0 + 120 * m, 1.0)]
    assert trial_co2(timeline, _hourly(100, 300)).co2_kg == pytest.approx(0.180)


def test_series_not_covering_the_trial_holds_its_nearest_values() -> None:
    # the series starts at 00:00 and its last value (300) holds past its end
    timeline = [(T0 - H, 0.0), (T0, 0.5), (T0 + 3 * H, 1.0)]
    # first segment before the series: first value 100; then 100 for 1 h and 300 for 2 h
    expected = 0.5 * 100 + 0.5 * (100 + 2 * 300) / 3
    assert trial_co2(timeline, _hourly(100, 300)).co2_kg * 1000 == pytest.approx(expected)


def test_clean_timeline_keeps_measured_heartbeats_and_closes_at_the_final() -> None:
    points = [(T0 + 10, 0.1), (T0 + 20, 0.3), (T0 + 20.5, 0.3)]
    assert clean_timeline(points, T0, T0 + 30, 0.4) == [
        (T0, 0.0),
        (T0 + 10, 0.1),
        (T0 + 20, 0.3),
        (T0 + 20.5, 0.3),
        (T0 + 30, 0.4),
    ]
    # no heartbeats: spread evenly
    assert clean_timeline([], T0, T0 + 30, 0.4) == [(T0, 0.0), (T0 + 30, 0.4)]
    # a final below the heartbeats (a noisy live reading): heartbeats scaled to it
    scaled = clean_timeline([(T0 + 10, 0.2), (T0 + 20, 0.5)], T0, T0 + 30, 0.25)
    assert [e for _, e in scaled] == pytest.approx([0.0, 0.1, 0.25, 0.25])


def test_reported_energy_takes_the_shape_of_the_heartbeats() -> None:
    # CPU heartbeats say: 1 unit per 10 s, extrapolated to 3 units at 30 s; the objective
    # reported 6 kWh in total, so each 10 s carries 2 kWh.
    points = [(T0 + 10, 1.0), (T0 + 20, 2.0)]
    shaped = clean_timeline(points, T0, T0 + 30, 6.0, shape_only=True)
    assert [e for _, e in shaped] == pytest.approx([0.0, 2.0, 4.0, 6.0])


def _entry(start: float, end: float, kwh: float, beats: list[tuple[float, float]]) -> TrialRecord:
    return TrialRecord("t", {}, status="completed", energy_kwh=kwh, started_at=start, run_started_at=start,
                       ended_at=end, energy_timeline=tuple(beats))


def _trace(tmp_path: Path) -> Path:
    # 500 g/kWh from 00:00 to 02:00, 100 from 02:00 to 04:00, 20-minute steps
    path = tmp_path / "trace.csv"
    times = pd.date_range("2020-06-01 00:00", periods=12, freq="20min")
    values = [500.0] * 6 + [100.0] * 6
    pd.DataFrame({"Time": times.strftime("%Y-%m-%d %H:%M:%S"), "Carbon Intensity": values}).to_csv(
        path, index=False
    )
    return path


def test_accountant_books_trials_and_the_all_at_once_counterfactual(tmp_path: Path) -> None:
    provider = CsvProvider(_trace(tmp_path))
    accountant = CarbonAccountant(provider, pue=1.2, study_start=T0)
    # a trial that waited until 02:00 and ran one hour at constant power: 2 kWh at 100 g
    late = _entry(T0 + 2 * H, T0 + 3 * H, 2.0, [(T0 + 2.5 * H, 1.0)])
    late.info.update(accountant.trial(late))
    assert late.info["co2_kg"] == pytest.approx(2.0 * 100 * 1.2 / 1000)
    assert late.info["carbon_intensity_mean"] == pytest.approx(100.0)
    assert late.info["carbon_provider"] == "csv:trace.csv" and "carbon_fallback" not in late.info
    totals = accountant.study([late], overhead_kwh=0.0, study_end=T0 + 3 * H)
    # had it started at 00:00 it would have run at 500 g/kWh: 2 x 500 x 1.2 = 1.2 kg
    assert totals["co2_kg"] == pytest.approx(0.24)
    assert totals["co2_counterfactual_kg"] == pytest.approx(1.2)
    assert totals["co2_saved_kg"] == pytest.approx(0.96)
    # overhead energy is spread over the study (3 h: 2 h at 500, 1 h at 100 -> mean 366.7)
    with_overhead = accountant.study([late], overhead_kwh=0.3, study_end=T0 + 3 * H)
    overhead_kg = 0.3 * (2 * 500 + 100) / 3 * 1.2 / 1000
    assert with_overhead["co2_kg"] == pytest.approx(0.24 + overhead_kg)
    assert with_overhead["co2_counterfactual_kg"] == pytest.approx(1.2 + overhead_kg)


def test_accounting_outside_a_trace_falls_back_to_static_and_says_so(tmp_path: Path) -> None:
    provider = FallbackProvider(CsvProvider(_trace(tmp_path)), StaticProvider("FR"))
    accountant = CarbonAccountant(provider, pue=1.0, study_start=T0 + 400 * H)
    entry = _entry(T0 + 400 * H, T0 + 401 * H, 1.0, [])
    info = accountant.trial(entry)
    assert info["co2_kg"] == pytest.approx(56.0 / 1000)  # France's annual average
    reason = info["carbon_fallback"]
    assert reason.startswith("csv history: trace.csv covers 2020-06-01 00:00 to ")
    assert "56 gCO2/kWh (FR (France) 2023 average) instead" in reason and "API" not in reason
    assert accountant.fallback_reasons


def test_carbon_fields_are_ledger_info_keys() -> None:
    for key in ("co2_kg", "carbon_intensity_mean", "carbon_provider", "carbon_fallback"):
        assert is_info_key(key)


def test_ledger_records_the_energy_timeline_once_per_result() -> None:
    ledger = EnergyLedger(1.0, watts_per_core=10.0, metric="accuracy")
    ledger.start("t1", {})
    beat = {
        "energy_kwh": 0.1,
        "greentune_status": "running",
        "training_iteration": 1,
        "time_total_s": 2.0,
    }
    ledger.observe("t1", beat)
    ledger.observe("t1", dict(beat))  # the stopper and the callback both see each result
    ledger.observe("t1", {**beat, "energy_kwh": 0.2, "training_iteration": 2})
    ledger.observe(
        "t1",
        {
            "energy_kwh": 0.25,
            "greentune_status": "completed",
            "accuracy": 1.0,
            "training_iteration": 3,
        },
    )
    entry = ledger.records["t1"]
    assert [e for _, e in entry.energy_timeline] == [0.1, 0.2]
    assert entry.run_started_at is not None
    assert entry.run_started_at <= entry.energy_timeline[0][0] - 2.0 + 1e-6
    assert entry.ended_at >= entry.energy_timeline[-1][0]
