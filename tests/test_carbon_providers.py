"""Static and CSV carbon-intensity providers, and step-held resampling."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from tuner.carbon import CsvProvider, StaticProvider, read_intensity_csv, resample
from tuner.carbon.series import StepFunction
from tuner.errors import ConfigError

UTC = timezone.utc
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "carbon"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data/carbon")


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_static_known_zone_world_fallback_and_override() -> None:
    assert StaticProvider("FR").current().g_per_kwh == 56.0
    assert "Ember" in StaticProvider("DE").current().source
    assert StaticProvider("DE-LU").current().g_per_kwh == 380.9  # sub-zone -> country
    world = StaticProvider(None).current()
    assert world.g_per_kwh == 481.0 and world.fallback_reason is None
    unknown = StaticProvider("ZZ").current()
    assert unknown.g_per_kwh == 481.0 and "ZZ" in unknown.fallback_reason
    override = StaticProvider("FR", g_per_kwh=123.0).current()
    assert (override.g_per_kwh, override.source) == (123.0, "static (user override)")
    with pytest.raises(ValueError, match="carbon.g_per_kwh"):
        StaticProvider(g_per_kwh=-1)


def test_static_series_covers_the_interval_from_its_start() -> None:
    series = StaticProvider("FR").forecast(_at(2024, 1, 1, 0, 30), _at(2024, 1, 1, 3, 30))
    assert list(series.values.index) == [
        pd.Timestamp(t)
        for t in [
            "2024-01-01 00:30Z",
            "2024-01-01 01:00Z",
            "2024-01-01 02:00Z",
            "2024-01-01 03:00Z",
        ]
    ]
    assert set(series.values) == {56.0} and series.signal == "average"


def test_step_function_mean_is_time_weighted() -> None:
    # 100 for 1 h, then 400 for 1 h (last value holds one median step)
    values = pd.Series(
        [100.0, 400.0], index=pd.to_datetime(["2024-01-01 00:00Z", "2024-01-01 01:00Z"])
    )
    fn = StepFunction(values)
    t = pd.Timestamp("2024-01-01 00:00Z")
    # 45 min at 100 + 30 min at 400 over 75 min = (4500 + 12000) / 75 = 220
    assert fn.mean(t + pd.Timedelta("15min"), t + pd.Timedelta("90min")) == pytest.approx(220.0)
    assert fn.mean(t + pd.Timedelta("10min"), t + pd.Timedelta("10min")) == 100.0
    assert fn.end == t + pd.Timedelta("2h")
    # outside the defined span: only the defined part counts
    assert fn.mean(t - pd.Timedelta("1h"), t + pd.Timedelta("1h")) == pytest.approx(100.0)


def test_resample_down_is_exact_mean_and_up_repeats() -> None:
    idx = pd.date_range("2024-01-01 00:00Z", periods=4, freq="15min")
    values = pd.Series([100.0, 200.0, 300.0, 600.0], index=idx)
    hourly = resample(values, "1h")
    assert list(hourly) == [pytest.approx(300.0)] and hourly.index[0] == idx[0]
    half = resample(values, "30min")
    assert list(half) == [pytest.approx(150.0), pytest.approx(450.0)]
    five = resample(values, timedelta(minutes=5))
    assert len(five) == 12 and list(five[:3]) == [100.0] * 3 and five.iloc[-1] == 600.0
    # an uneven step: 20 min buckets from 00:00 -> [100 15min + 200 5min]/20 = 125
    twenty = resample(values, "20min")
    assert twenty.iloc[0] == pytest.approx(125.0)
    with pytest.raises(ValueError, match="step"):
        resample(values, "0s")


def test_time_carbon_intensity_csv_naive_is_utc(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(
        "Time,Carbon Intensity\n2020-06-01 00:00:00,100\n"
        "2020-06-01 00:30:00,300\n2020-06-01 01:00:00,50\n"
    )
    provider = CsvProvider(path, clock=lambda: _at(2020, 6, 1, 0, 40))
    reading = provider.current()
    assert reading.g_per_kwh == 300.0 and reading.source == "csv:trace.csv"
    hist = provider.history(_at(2020, 6, 1, 0, 15), _at(2020, 6, 1, 1, 0))
    assert list(hist.values) == [100.0, 300.0]
    assert hist.values.index[0] == pd.Timestamp("2020-06-01 00:15Z")
    assert "forecast" in provider.forecast(_at(2020, 6, 1), _at(2020, 6, 1, 1)).source
    hourly = CsvProvider(path, step="1h").values
    assert hourly.iloc[0] == pytest.approx(200.0)
    with pytest.raises(LookupError, match="covers"):
        provider.history(_at(2021, 1, 1), _at(2021, 1, 2))


def test_naive_times_in_a_local_timezone_across_dst(tmp_path: Path) -> None:
    path = tmp_path / "berlin.csv"
    # 2020-03-29 02:00 local does not exist in Europe/Berlin (clocks jump to 03:00)
    path.write_text(
        "Time,Carbon Intensity\n2020-03-29 01:00:00,1\n2020-03-29 03:00:00,2\n"
        "2020-06-01 12:00:00,3\n"
    )
    values = read_intensity_csv(path, timezone_name="Europe/Berlin")
    assert list(values.index) == [
        pd.Timestamp("2020-03-29 00:00Z"),
        pd.Timestamp("2020-03-29 01:00Z"),
        pd.Timestamp("2020-06-01 10:00Z"),
    ]


def test_offset_timestamps_are_converted(tmp_path: Path) -> None:
    path = tmp_path / "offset.csv"
    path.write_text(
        "Time,Carbon Intensity\n2020-06-01T02:00:00+02:00,10\n2020-06-01T01:00:00Z,20\n"
    )
    values = read_intensity_csv(path)
    assert list(values.index) == [
        pd.Timestamp("2020-06-01 00:00Z"),
        pd.Timestamp("2020-06-01 01:00Z"),
    ]
    assert list(values) == [10.0, 20.0]


ELECTRICITY_MAPS_EXPORT = (
    "Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
    "Carbon Intensity gCO₂eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,"
    "Data Source,Data Estimated,Data Estimation Method\n"
    "2023-01-01 00:00:00,Germany,Germany,DE,331.77,393.12,48.41,44.62,entsoe.eu,false,\n"
    "2023-01-01 01:00:00,Germany,Germany,DE,322.18,382.6,49.9,46.06,entsoe.eu,false,\n"
    "2023-01-01 02:00:00,Germany,Germany,DE,,380.0,50.1,46.3,entsoe.eu,true,TIME_SLICER_AVERAGE\n"
)


def test_electricity_maps_export_direct_and_lifecycle(tmp_path: Path) -> None:
    path = tmp_path / "DE_2023_hourly.csv"
    path.write_text(ELECTRICITY_MAPS_EXPORT, encoding="utf-8")
    direct = read_intensity_csv(path)
    assert list(direct) == [331.77, 322.18]  # the empty cell is dropped, not zero
    assert direct.index[0] == pd.Timestamp("2023-01-01 00:00Z")
    lca = read_intensity_csv(path, lifecycle=True)
    assert list(lca) == [393.12, 382.6, 380.0]


def test_unrecognised_header_names_the_expected_columns(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("when,value\n2020-01-01,1\n")
    with pytest.raises(ValueError, match="Time,Carbon Intensity"):
        read_intensity_csv(path)
    with pytest.raises(ConfigError, match="carbon.csv_path: no such file"):  # exit 2 in the CLI
        read_intensity_csv(tmp_path / "missing.csv")


@pytest.mark.skipif(
    not SHARED.is_dir(), reason="shared carbon traces not present at ../shared/data/carbon"
)
def test_shared_traces_load_and_resample() -> None:
    de = CsvProvider(SHARED / "ger_ci.csv", step="1h")
    day = de.history(_at(2020, 6, 1), _at(2020, 6, 2)).values
    assert len(day) == 24 and day.between(20, 1000).all()
    raw = read_intensity_csv(SHARED / "ger_ci.csv")
    assert pd.Series(raw.index).diff().median() == pd.Timedelta("15min")
    four = raw[(raw.index >= "2020-06-01 05:00Z") & (raw.index < "2020-06-01 06:00Z")]
    assert day.loc["2020-06-01 05:00Z"] == pytest.approx(four.mean())
    fr = CsvProvider(SHARED / "fr_ci.csv")
    assert fr.history(_at(2020, 1, 1), _at(2020, 1, 2)).values.between(5, 300).all()


# ------------------------------------------------------------------ the carbon: config section


def _study(**carbon: object) -> dict:
    return {
        "objective": "tests.objectives_for_tests:quadratic",
        "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "budget_kwh": 1.0,
        **({"carbon": carbon} if carbon else {}),
    }


def test_existing_studies_need_no_carbon_keys() -> None:
    from tuner.carbon.registry import build_provider
    from tuner.config import load_config

    cfg = load_config(_study())
    assert (cfg.carbon.provider, cfg.carbon.policy) == ("static", "none")
    provider = build_provider(cfg.carbon)
    assert isinstance(provider, StaticProvider) and provider.current().g_per_kwh == 481.0


@pytest.mark.parametrize(
    ("carbon", "message"),
    [
        ({"provider": "csv"}, "carbon: provider 'csv' needs csv_path"),
        ({"provider": "csv", "csv_path": "/nope.csv"}, "csv_path: no such file"),
        ({"provider": "electricitymaps"}, "needs zone"),
        ({"provider": "watttime"}, "needs region"),
        ({"provider": "ukci", "region": "99"}, "region ids are 1-17"),
        ({"provider": "carbonara"}, "carbon.provider"),
        ({"policy": "flexible-start"}, "needs a deadline"),
        ({"policy": "threshold", "deadline": "24h"}, "exactly one of threshold_g_per_kwh"),
        ({"policy": "pause-resume", "deadline": "24h"}, "'pause-resume' needs exactly one of threshold_g_per_kwh"),
        ({"deadline": "soon"}, "carbon.deadline: 'soon' is not a duration"),
        ({"deadline": "-2h"}, "must be a positive duration"),
        ({"step": "0min"}, "carbon.step"),
        ({"g_per_kwh": -5}, "carbon.g_per_kwh"),
        ({"zonne": "DE"}, "did you mean 'zone'"),
    ],
)
def test_bad_carbon_settings_name_the_field(carbon: dict, message: str) -> None:
    from tuner.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="carbon") as info:
        load_config(_study(**carbon))
    assert message in str(info.value)


def test_registry_builds_each_provider_with_a_static_fallback(tmp_path: Path) -> None:
    from tuner.carbon.fallback import FallbackProvider
    from tuner.carbon.registry import Resampled, build_provider
    from tuner.config import CarbonSettings

    path = tmp_path / "t.csv"
    path.write_text("Time,Carbon Intensity\n2020-06-01 00:00,100\n2020-06-01 00:15,300\n")
    csv = build_provider(CarbonSettings(provider="csv", csv_path=path, step="30min", zone="FR"),
                         clock=lambda: _at(2020, 6, 1, 0, 10))
    assert isinstance(csv, FallbackProvider) and isinstance(csv.primary, Resampled)
    assert csv.fallback.g_per_kwh == 56.0
    half_hour = csv.history(_at(2020, 6, 1), _at(2020, 6, 1, 0, 30)).values
    assert list(half_hour) == [pytest.approx(200.0)]
    for name, extra in [
        ("ukci", {}),
        ("electricitymaps", {"zone": "DE"}),
        ("watttime", {"region": "CAISO_NORTH"}),
    ]:
        provider = build_provider(CarbonSettings(provider=name, **extra))
        assert isinstance(provider, FallbackProvider) and provider.name == name


def test_trials_left_takes_the_tighter_of_max_trials_and_budget() -> None:
    from tuner.carbon.wiring import trials_left
    from tuner.study.ledger import EnergyLedger

    ledger = EnergyLedger(1.0, watts_per_core=10.0, metric="accuracy")
    assert trials_left(ledger, None) is None
    assert trials_left(ledger, 10) == 10
    ledger.observe("a", {"energy_kwh": 0.2, "greentune_status": "completed", "accuracy": 1.0})
    assert trials_left(ledger, 10) == 4  # 0.8 kWh left at 0.2 per trial
    assert trials_left(ledger, 3) == 2


def test_policy_wraps_the_searcher_in_a_gate_planning_the_remaining_work(tmp_path: Path) -> None:
    from datetime import timedelta

    from ray.tune.search import Searcher

    from tuner.carbon.gate import CarbonGate
    from tuner.carbon.wiring import gate_searcher
    from tuner.config import load_config
    from tuner.study.ledger import EnergyLedger

    inner = Searcher()
    ledger = EnergyLedger(1.0, watts_per_core=10.0, metric="accuracy")
    start = _at(2020, 6, 1, 9)
    plain = load_config({**_study(), "max_concurrent_trials": 2})
    assert gate_searcher(inner, StaticProvider(), plain, ledger, start) is inner
    cfg = load_config(
        {
            **_study(policy="flexible-start", deadline="24h", min_saving=0.05),
            "max_concurrent_trials": 2,
            "max_trials": 5,
        }
    )
    gate = gate_searcher(inner, StaticProvider(), cfg, ledger, start)
    assert isinstance(gate, CarbonGate) and gate.inner is inner
    assert gate.deadline == start + timedelta(hours=24)
    assert (gate.policy.kind, gate.policy.min_saving) == ("flexible-start", 0.05)
    assert gate.work() is None  # nothing finished yet: no honest estimate
    for trial, seconds in (("a", 600.0), ("b", 900.0)):
        ledger.observe(
            trial,
            {
                "energy_kwh": 0.01,
                "greentune_status": "completed",
                "accuracy": 1.0,
                "duration_s": seconds,
            },
        )
    # 3 trials left at 2 at a time = 2 rounds of the median 750 s
    assert gate.work() == timedelta(seconds=1500)


def test_the_gate_and_the_pause_scheduler_get_the_console() -> None:
    from ray.tune.search import Searcher

    from tuner.carbon.wiring import gate_searcher, pause_scheduler
    from tuner.config import load_config
    from tuner.study.ledger import EnergyLedger

    ledger, start, lines = EnergyLedger(1.0, watts_per_core=10.0, metric="accuracy"), _at(2020, 6, 1, 9), []
    cfg = load_config({**_study(policy="pause-resume", deadline="24h", threshold_g_per_kwh=300.0),
                       "max_concurrent_trials": 1})
    assert gate_searcher(Searcher(), StaticProvider(), cfg, ledger, start, lines.append).notify == lines.append
    assert pause_scheduler(StaticProvider(), cfg, ledger, start, lines.append).notify == lines.append
    assert gate_searcher(Searcher(), StaticProvider(), cfg, ledger, start).notify is None
