"""Static provider: one yearly-average intensity per zone, with its year and source.

The figures are ``data/grid_intensity.csv``: every country of Ember's yearly data (via
Our World in Data), US states (EPA eGRID), Canadian and Chinese provinces and Nordic
bidding zones, as shipped in the codecarbon wheel and extracted by
``data/build_table.py``.

Used when nothing better is configured, and as the fallback whenever a live provider
fails, so a study always has an intensity. An annual average cannot see the hour-to-hour
swings that carbon-aware scheduling exploits: with it, every start time looks the same.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import pandas as pd

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries
from tuner.carbon.series import to_utc

log = logging.getLogger(__name__)

_EMBER = "Ember 2023 (Electricity generation emission intensity, July 2024)"
TABLE_PATH = Path(__file__).resolve().parent / "data" / "grid_intensity.csv"
#: Other names for a zone in the table (Electricity Maps and common usage say UK for GB).
ALIASES = {"UK": "GB"}


@dataclass(frozen=True)
class GridFigure:
    """One zone's yearly average intensity of generation, with its year and source."""

    zone: str
    name: str
    g_per_kwh: float
    year: int
    source: str


@lru_cache(maxsize=1)
def grid_table() -> dict[str, GridFigure]:
    """Every zone of ``data/grid_intensity.csv`` (countries by ISO 3166 alpha-2, US
    states, Canadian and Chinese provinces, Nordic bidding zones), by upper-case zone.

    The file is built by ``data/build_table.py`` from the codecarbon wheel, which records
    where each figure comes from; see docs/carbon.md.
    """
    with TABLE_PATH.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {
        r["zone"].upper(): GridFigure(r["zone"], r["name"], float(r["g_per_kwh"]),
                                      int(r["year"]), r["source"])
        for r in rows
    }


#: World average of 2023.
WORLD_G_PER_KWH: tuple[float, str] = (481, _EMBER)


def figure_label(zone: str | None) -> str:
    """Which figure a zone gets, in a few words: ``GB (United Kingdom) 2023 average``,
    ``US 2023 average (country of US-CAL-CISO)`` or ``world average``."""
    if zone is None:
        return "world average"
    table = grid_table()
    key = ALIASES.get(zone.strip().upper(), zone.strip().upper())
    if key in table:
        return f"{table[key].zone} ({table[key].name}) {table[key].year} average"
    country = ALIASES.get(key.split("-")[0], key.split("-")[0])
    if country in table:
        return f"{country} {table[country].year} average (country of {zone})"
    return "world average"


def annual_intensity(zone: str | None) -> tuple[float, str, str | None]:
    """(g/kWh, source, fallback_reason) for a zone.

    The zone's own figure when the table has it (``GB``, ``US-CA``, ``SE-SE3``); else its
    country's (``US-CAL-CISO`` and ``DE-LU`` take ``US`` and ``DE``), and the source
    says so; the world average only for a zone whose country is not in the table, with
    a ``fallback_reason`` saying why.
    """
    world = float(WORLD_G_PER_KWH[0]), f"world average, {WORLD_G_PER_KWH[1]}"
    if zone is None:
        return (*world, None)
    table = grid_table()
    key = ALIASES.get(zone.strip().upper(), zone.strip().upper())
    if key in table:
        fig = table[key]
        return fig.g_per_kwh, f"{fig.zone} ({fig.name}) {fig.year} average, {fig.source}", None
    country = ALIASES.get(key.split("-")[0], key.split("-")[0])
    if country in table:
        fig = table[country]
        return (fig.g_per_kwh, f"{fig.zone} ({fig.name}) {fig.year} average for zone {zone!r}, "
                               f"which has no figure of its own, {fig.source}", None)
    reason = f"no annual figure for zone {zone!r} nor its country; world average used"
    return (*world, reason)


class StaticProvider(IntensityProvider):
    """A constant intensity: ``g_per_kwh`` if given (a user override), else the annual
    average for ``zone``, else the world average.

    Example::

        StaticProvider("FR").current().g_per_kwh      # 56.0
        StaticProvider("US-CA").current().source      # "static (US-CA (California) 2023 ...)"
        StaticProvider(g_per_kwh=120).current().source # "static (user override)"
    """

    name = "static"
    signal = "average"

    def __init__(self, zone: str | None = None, g_per_kwh: float | None = None) -> None:
        if g_per_kwh is not None:
            if not g_per_kwh >= 0:
                raise ValueError(f"carbon.g_per_kwh: must be >= 0, got {g_per_kwh}")
            self.g_per_kwh, self.source, self.reason = float(g_per_kwh), "user override", None
        else:
            self.g_per_kwh, self.source, self.reason = annual_intensity(zone)
            if self.reason:
                log.warning("static carbon intensity: %s", self.reason)
        self.zone = zone
        self.label = "user override" if g_per_kwh is not None else figure_label(zone)
        self.source = f"static ({self.source})"

    def current(self) -> IntensityReading:
        return IntensityReading(
            datetime.now(timezone.utc), self.g_per_kwh, self.source, self.signal, self.reason
        )

    def history(self, start: datetime, end: datetime) -> IntensitySeries:
        start_ts, end_ts = to_utc(start), to_utc(end)
        idx = pd.date_range(start_ts.floor("1h"), end_ts, freq="1h", inclusive="left")
        idx = idx.where(idx >= start_ts, start_ts)  # first point at ``start`` itself
        values = pd.Series(self.g_per_kwh, index=idx.unique(), dtype=float)
        return IntensitySeries(values, self.source, self.signal, self.reason)

    forecast = history
