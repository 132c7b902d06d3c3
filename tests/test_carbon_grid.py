"""The static table covers every country and the regions its sources give, each figure
with a year and a source; a zone uses its own figure, its country's, or (unknown) the
world average, and says which."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.carbon_servers import serve
from tuner.carbon.fallback import FallbackProvider
from tuner.carbon.static import TABLE_PATH, StaticProvider, annual_intensity, grid_table
from tuner.carbon.ukci import UkCarbonIntensityProvider

WHEEL = Path("/tmp/cc/codecarbon-3.3.2-py3-none-any.whl")


def test_every_row_has_a_figure_a_year_and_a_source() -> None:
    with TABLE_PATH.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"zone", "g_per_kwh", "year", "source"} <= set(rows[0])
    countries = [r for r in rows if len(r["zone"]) == 2]
    assert len(countries) >= 200, "every country of the yearly data, not a hand-picked few"
    for r in rows:
        assert 0 <= float(r["g_per_kwh"]) < 1500, r
        assert 2000 <= int(r["year"]) <= 2030, r
        assert "codecarbon 3.3.2" in r["source"], r
    assert len({r["zone"] for r in rows}) == len(rows)


@pytest.mark.parametrize("zone", ["GB", "US", "NL", "ES", "IT", "JP", "DE", "FR", "NO", "PL", "SE"])
def test_the_zones_the_issue_names_have_their_own_figure(zone: str) -> None:
    value, source, reason = annual_intensity(zone)
    assert reason is None and value == grid_table()[zone].g_per_kwh
    assert source.startswith(f"{zone} (") and "world average" not in source


def test_regions_where_the_data_gives_them() -> None:
    california, _, _ = annual_intensity("US-CA")
    west_virginia, _, _ = annual_intensity("US-WV")
    assert california < annual_intensity("US")[0] < west_virginia  # eGRID states differ
    assert annual_intensity("CA-QC")[0] < 50 < annual_intensity("CA-AB")[0]
    assert "CN-BJ" in grid_table() and "SE-SE3" in grid_table() and "NO-NO1" in grid_table()


def test_a_sub_zone_without_a_figure_uses_its_country_and_says_so() -> None:
    value, source, reason = annual_intensity("US-CAL-CISO")
    assert value == grid_table()["US"].g_per_kwh and reason is None
    assert "for zone 'US-CAL-CISO', which has no figure of its own" in source


def test_only_an_unknown_zone_gets_the_world_average() -> None:
    value, source, reason = annual_intensity("ZZ-MARS")
    assert value == 481.0 and "world average" in source
    assert reason is not None and "ZZ-MARS" in reason
    assert annual_intensity("UK")[0] == grid_table()["GB"].g_per_kwh  # a common alias


def test_a_failed_api_falls_back_to_the_zones_own_figure() -> None:
    with serve("ukci") as (url, state):
        state.mode = "error"
        provider = FallbackProvider(
            UkCarbonIntensityProvider(base_url=url, retries=0, timeout_s=2.0),
            StaticProvider("GB"),
        )
        reading = provider.current()
    assert reading.g_per_kwh == grid_table()["GB"].g_per_kwh
    assert "GB (United Kingdom)" in (reading.fallback_reason or "")


def test_carbon_now_zone_gb(capsys: pytest.CaptureFixture[str]) -> None:
    from tuner.cli import main

    assert main(["carbon", "now", "--zone", "GB"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{grid_table()['GB'].g_per_kwh:.1f} gCO2/kWh")
    assert "GB (United Kingdom) 2023 average" in out and "481" not in out


@pytest.mark.skipif(not WHEEL.is_file(), reason=f"codecarbon wheel not downloaded to {WHEEL}")
def test_the_build_script_reproduces_the_shipped_table(tmp_path: Path) -> None:
    pytest.importorskip("pycountry", reason="the build script needs pycountry")
    out = tmp_path / "table.csv"
    script = TABLE_PATH.parent / "build_table.py"
    subprocess.run([sys.executable, str(script), str(WHEEL), "--out", str(out)], check=True,
                   capture_output=True)
    assert out.read_text() == TABLE_PATH.read_text()
