"""Dirty carbon CSVs: every defect is a one-line ConfigError or a warning naming the file,
the row and the option; never a traceback, never a silent repair."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tuner.carbon.csvfile import CsvProvider, read_intensity_csv
from tuner.errors import CarbonDataWarning, ConfigError

HEADER = "Time,Carbon Intensity\n"


def _write(tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def _hourly(n: int = 6, start: str = "2020-06-01", value: float = 100.0) -> list[str]:
    return [f"{start} {h:02d}:00,{value + h}" for h in range(n)]


def _read_error(path: Path, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        read_intensity_csv(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    assert str(path) in message and "carbon.csv_path" in message
    return message


def test_a_clean_file_reads_without_warning(tmp_path: Path) -> None:
    path = _write(tmp_path, _hourly())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = read_intensity_csv(path)
    assert list(values) == [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert "is empty" in _read_error(path)


def test_header_only(tmp_path: Path) -> None:
    assert "no data rows" in _read_error(_write(tmp_path, []))


def test_wrong_header(tmp_path: Path) -> None:
    message = _read_error(_write(tmp_path, ["2020-06-01 00:00,1"], header="when,value\n"))
    assert "Time,Carbon Intensity" in message and "'when'" in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="carbon.csv_path: no such file"):
        read_intensity_csv(tmp_path / "missing.csv")


def test_text_value_names_the_row(tmp_path: Path) -> None:
    rows = _hourly()
    rows[3] = "2020-06-01 03:00,n/a-ish"
    message = _read_error(_write(tmp_path, rows))
    assert "row 5" in message and "'n/a-ish'" in message  # line 5: header is line 1


def test_negative_value_names_the_row(tmp_path: Path) -> None:
    rows = _hourly()
    rows[2] = "2020-06-01 02:00,-40"
    message = _read_error(_write(tmp_path, rows))
    assert "row 4" in message and "negative" in message and "-40" in message


def test_unparseable_time_names_the_row(tmp_path: Path) -> None:
    rows = _hourly()
    rows[1] = "yesterday-ish,120"
    message = _read_error(_write(tmp_path, rows))
    assert "row 3" in message and "'yesterday-ish'" in message


def test_conflicting_duplicate_timestamps_are_an_error(tmp_path: Path) -> None:
    rows = _hourly() + ["2020-06-01 02:00,999"]
    message = _read_error(_write(tmp_path, rows))
    assert "rows 4 and 8" in message and "2020-06-01 02:00" in message


def test_identical_duplicates_warn_and_keep_one(tmp_path: Path) -> None:
    rows = _hourly() + ["2020-06-01 02:00,102.0"]
    path = _write(tmp_path, rows)
    with pytest.warns(CarbonDataWarning, match=r"carbon.csv_path: .*trace.csv rows 4 and 8") as w:
        values = read_intensity_csv(path)
    assert len(values) == 6 and str(path) in str(w[0].message)


def test_missing_values_warn_naming_the_rows(tmp_path: Path) -> None:
    rows = _hourly()
    rows[2] = "2020-06-01 02:00,"
    rows[3] = "2020-06-01 03:00,NaN"
    with pytest.warns(CarbonDataWarning, match=r"rows 4 and 5 .*have no value") as w:
        values = read_intensity_csv(_write(tmp_path, rows))
    assert len(values) == 4
    assert any("gap" in str(x.message) for x in w), "the hole left behind is reported too"


def test_a_gap_warns_naming_the_rows_and_its_length(tmp_path: Path) -> None:
    rows = _hourly(3) + ["2020-06-01 09:00,50", "2020-06-01 10:00,60"]
    with pytest.warns(CarbonDataWarning, match=r"rows 4 and 5.*6 h gap") as w:
        read_intensity_csv(_write(tmp_path, rows))
    assert "held" in str(w[0].message)  # it says what is done over the gap


def test_a_gap_over_a_day_is_an_error(tmp_path: Path) -> None:
    rows = _hourly(3) + ["2020-06-04 09:00,50", "2020-06-04 10:00,60"]
    assert "gap" in _read_error(_write(tmp_path, rows))


def test_unknown_timezone(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"carbon.csv_timezone: unknown time zone 'Mars/Base'"):
        read_intensity_csv(_write(tmp_path, _hourly()), timezone_name="Mars/Base")


def test_ambiguous_local_time(tmp_path: Path) -> None:
    # 02:30 on 2020-10-25 happens twice in Berlin; a single row cannot say which
    rows = ["2020-10-25 01:30,10", "2020-10-25 02:30,20", "2020-10-25 03:30,30"]
    message = _read_error(_write(tmp_path, rows), timezone_name="Europe/Berlin")
    assert "row 3" in message and "ambiguous" in message and "Europe/Berlin" in message


def test_nonexistent_local_time(tmp_path: Path) -> None:
    rows = ["2020-03-29 01:30,10", "2020-03-29 02:30,20", "2020-03-29 03:30,30"]
    message = _read_error(_write(tmp_path, rows), timezone_name="Europe/Berlin")
    assert "row 3" in message and "does not exist" in message


def test_a_repeated_local_hour_in_order_is_read(tmp_path: Path) -> None:
    rows = ["2020-10-25 01:30,10", "2020-10-25 02:30,20", "2020-10-25 02:30,21",
            "2020-10-25 03:30,30"]
    values = read_intensity_csv(_write(tmp_path, rows), timezone_name="Europe/Berlin")
    assert list(values) == [10.0, 20.0, 21.0, 30.0]


# ------------------------------------------------------------------ coverage of the study


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_provider_refuses_a_present_the_file_does_not_cover(tmp_path: Path) -> None:
    path = _write(tmp_path, _hourly(24))
    provider = CsvProvider(path, clock=lambda: _at(2020, 6, 1, 5))
    provider.check_covers(_at(2020, 6, 1, 5), timedelta(hours=2))  # inside: fine
    with pytest.raises(ConfigError) as info:
        provider.check_covers(_at(2024, 1, 1), None)
    message = str(info.value)
    assert "carbon.csv_path" in message and str(path) in message and "2024-01-01" in message
    assert "retry" not in message


def test_provider_warns_when_the_file_ends_before_the_deadline(tmp_path: Path) -> None:
    provider = CsvProvider(_write(tmp_path, _hourly(24)))
    with pytest.warns(CarbonDataWarning, match=r"ends at 2020-06-02 00:00 UTC, before carbon.deadline"):
        provider.check_covers(_at(2020, 6, 1, 5), timedelta(hours=24))


def test_fallback_for_a_file_does_not_speak_of_retrying_an_api(tmp_path: Path) -> None:
    from tuner.carbon.fallback import FallbackProvider
    from tuner.carbon.static import StaticProvider

    now = [_at(2020, 6, 1, 5)]
    provider = FallbackProvider(
        CsvProvider(_write(tmp_path, _hourly(24)), clock=lambda: now[0]), StaticProvider("FR")
    )
    assert provider.current().fallback_reason is None
    now[0] = _at(2020, 6, 3)
    for _ in range(2):  # the second call falls in the cooldown
        reason = provider.current().fallback_reason
        assert reason is not None and "trace.csv" in reason and "covers" in reason
        assert "API" not in reason and "retry" not in reason


# ------------------------------------------------------------------ config and command line


def test_unknown_timezone_is_refused_by_the_config(tmp_path: Path) -> None:
    from tuner.config import load_config

    study = {
        "objective": "tests.objectives_for_tests:quadratic",
        "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "budget_kwh": 1.0,
        "carbon": {"provider": "csv", "csv_path": str(_write(tmp_path, _hourly())),
                   "csv_timezone": "Mars/Base"},
    }
    with pytest.raises(ConfigError, match=r"carbon.csv_timezone: unknown time zone 'Mars/Base'"):
        load_config(study)


def test_yaml_errors_name_the_field_once(tmp_path: Path) -> None:
    from tuner.config import load_config

    path = tmp_path / "study.yaml"
    path.write_text(
        "objective: tests.objectives_for_tests:quadratic\n"
        "search_space: {x: {type: float, low: 0, high: 1}}\n"
        "budget_kwh: 1\ncarbon: {deadline: soon}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).count("carbon.deadline") == 1


@pytest.mark.parametrize(
    ("args", "expected", "unwanted"),
    [
        (["--duration", "0h", "--deadline", "24h"], "--duration: must be a positive duration",
         "deadline"),
        (["--duration", "2h", "--deadline", "0h"], "--deadline: must be a positive duration", None),
    ],
)
def test_plan_duration_messages(args: list[str], expected: str, unwanted: str | None,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from tuner.cli import main

    assert main(["carbon", "plan", *args]) == 2
    err = capsys.readouterr().err
    assert expected in err
    if unwanted:
        assert unwanted not in err.split(expected, 1)[1]


@pytest.mark.parametrize(
    ("rows", "extra", "expected"),
    [
        (None, [], "is empty"),
        (["2020-06-01 00:00,-1"], [], "negative"),
        (["2020-06-01 00:00,1"], ["--csv-timezone", "Mars/Base"], "unknown time zone"),
        (["2020-06-01 00:00,1", "2020-06-01 01:00,2"], ["--at", "2023-01-01T00:00"], "covers"),
    ],
)
def test_carbon_now_exits_2_with_one_line(tmp_path: Path, rows: list[str] | None,
                                          extra: list[str], expected: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tuner.cli import main

    path = tmp_path / "bad.csv"
    path.write_text("" if rows is None else HEADER + "\n".join(rows) + "\n")
    code = main(["carbon", "now", "--provider", "csv", "--csv-path", str(path),
                 "--at", "2020-06-01T00:30", *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "is empty"),
        ("when,value\n2020-01-01,1\n", "unrecognised CSV header"),
        (HEADER + "2020-06-01 00:00,1\n2020-06-01 01:00,2\n", "covers"),  # not the present
    ],
)
def test_greentune_run_with_a_bad_trace_exits_2_before_ray(
    tmp_path: Path, content: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    from tuner.cli import main

    trace = tmp_path / "trace.csv"
    trace.write_text(content)
    study = tmp_path / "study.yaml"
    study.write_text(
        "objective: tests.objectives_for_tests:quadratic\n"
        "search_space: {x: {type: float, low: 0, high: 1}}\n"
        f"budget_kwh: 1\noutput_dir: {tmp_path / 'out'}\n"
        f"carbon: {{provider: csv, csv_path: {trace}}}\n"
    )
    ray_before = ray.is_initialized()  # the suite's session Ray may already be up
    assert main(["run", str(study), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert ray.is_initialized() == ray_before  # refused before Ray was started
    assert not (tmp_path / "out").exists(), "nothing written, no MLflow run opened"


def test_a_negative_forecast_value_is_a_value_error_not_an_index_error() -> None:
    import pandas as pd

    from tuner.carbon.base import IntensitySeries
    from tuner.carbon.schedule import plan_start

    idx = pd.date_range("2020-06-01", periods=24, freq="1h", tz="UTC")
    values = pd.Series(100.0, index=idx)
    values.iloc[5] = -3.0
    series = IntensitySeries(values, "some-api", "average")
    with pytest.raises(ValueError, match=r"some-api.*negative intensity \(-3 g/kWh"):
        plan_start(series, _at(2020, 6, 1), timedelta(hours=2), _at(2020, 6, 2))
