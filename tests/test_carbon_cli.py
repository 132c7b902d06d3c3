"""``greentune carbon now`` and ``greentune carbon plan`` from the command line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.carbon_servers import intensity_at, serve
from tuner.cli import main


def _trace(tmp_path: Path) -> Path:
    # 400 g/kWh all day except 200 from 03:00 to 06:00 and a single 50 dip at 14:00-14:30
    times = pd.date_range("2020-06-01 00:00", "2020-06-02 23:30", freq="30min")
    values = [
        200.0 if 3 <= t.hour < 6 else 50.0 if (t.hour, t.minute) == (14, 0) else 400.0
        for t in times
    ]
    path = tmp_path / "trace.csv"
    pd.DataFrame({"Time": times.strftime("%Y-%m-%d %H:%M:%S"), "Carbon Intensity": values}).to_csv(
        path, index=False
    )
    return path


def test_plan_picks_the_lowest_mean_window_not_the_lowest_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "carbon",
        "plan",
        "--provider",
        "csv",
        "--csv-path",
        str(_trace(tmp_path)),
        "--duration",
        "3h",
        "--deadline",
        "24h",
        "--at",
        "2020-06-01T09:00",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    # 3 h from 14:00 averages (50 + 5 x 400) / 6 = 341.7; 03:00 next day averages 200
    assert "start: 2020-06-02 03:00 UTC (in 18.0 h)" in out
    assert "expected: 200.0 gCO2/kWh" in out and "starting now: 400.0" in out
    assert "saving against starting now: 50.0%" in out


def test_now_reads_the_uk_api(capsys: pytest.CaptureFixture[str]) -> None:
    with serve("ukci") as (url, state):
        assert main(["carbon", "now", "--provider", "ukci", "--base-url", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{round(intensity_at(state.now) + 5):.1f} gCO2/kWh (average)")
    assert "fallback" not in out


def test_now_falls_back_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with serve("ukci") as (url, state):
        state.mode = "error"
        assert main(["carbon", "now", "--provider", "ukci", "--zone", "FR", "--base-url", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("56.0 gCO2/kWh") and "fallback: ukci current failed" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "--duration", "2x", "--deadline", "24h"], "--duration: '2x' is not a duration"),
        (["plan", "--duration", "2h", "--deadline", "24h", "--provider", "csv"], "needs csv_path"),
        (["now", "--provider", "electricitymaps"], "needs zone"),
        (["now", "--provider", "ukci", "--region", "40"], "region ids are 1-17"),
    ],
)
def test_bad_input_exits_2_naming_the_option(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["carbon", *args]) == 2
    assert message in capsys.readouterr().err
