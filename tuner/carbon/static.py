"""Static provider: one annual-average intensity per country, with a cited source.

Used when nothing better is configured, and as the fallback whenever a live provider
fails, so a study always has an intensity. An annual average cannot see the hour-to-hour
swings that carbon-aware scheduling exploits: with it, every start time looks the same.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pandas as pd

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries
from tuner.carbon.series import to_utc

log = logging.getLogger(__name__)

_OWID = "Ember & Energy Institute 2023, via Our World in Data (carbon-intensity-electricity)"
_EMBER = "Ember 2023 (Electricity generation emission intensity, July 2024)"

#: Annual average carbon intensity of electricity generation, gCO2eq/kWh, year 2023,
#: by ISO 3166-1 alpha-2 code (also the Electricity Maps zone of a whole country).
# fmt: off
ANNUAL_G_PER_KWH: dict[str, tuple[float, str]] = {
    "AR": (354, _OWID), "AT": (111, _OWID), "AU": (549, _OWID), "BD": (691, _OWID),
    "BE": (138, _OWID), "BG": (335, _OWID), "BO": (532, _OWID), "BR": (98, _OWID),
    "CA": (170, _OWID), "CL": (291, _OWID), "CN": (582, _OWID), "CO": (260, _OWID),
    "CR": (53, _OWID), "CY": (534, _OWID), "CZ": (450, _OWID), "DE": (381, _OWID),
    "DK": (152, _OWID), "EC": (150, _OWID), "EE": (417, _OWID), "EG": (570, _OWID),
    "FI": (79, _OWID), "FR": (56, _OWID), "GE": (168, _OWID), "GR": (337, _OWID),
    "HR": (205, _OWID), "HU": (204, _OWID), "IE": (291, _OWID), "IN": (713, _OWID),
    "IR": (655, _OWID), "SV": (271, _OWID), "NO": (30, _EMBER), "PL": (662, _EMBER),
    "SE": (41, _EMBER),
}
# fmt: on
#: World average for 2023.
WORLD_G_PER_KWH: tuple[float, str] = (481, _EMBER)


def annual_intensity(zone: str | None) -> tuple[float, str, str | None]:
    """(g/kWh, source, fallback_reason) for a zone; sub-zones such as ``US-CAL-CISO`` or
    ``DE-LU`` use their country's figure; unknown zones use the world average."""
    if zone is None:
        return float(WORLD_G_PER_KWH[0]), f"world average, {WORLD_G_PER_KWH[1]}", None
    country = zone.upper().split("-")[0]
    if country in ANNUAL_G_PER_KWH:
        value, source = ANNUAL_G_PER_KWH[country]
        return float(value), f"{country} annual average, {source}", None
    reason = f"no annual figure for zone {zone!r}; world average used"
    return float(WORLD_G_PER_KWH[0]), f"world average, {WORLD_G_PER_KWH[1]}", reason


class StaticProvider(IntensityProvider):
    """A constant intensity: ``g_per_kwh`` if given (a user override), else the annual
    average for ``zone``, else the world average.

    Example::

        StaticProvider("FR").current().g_per_kwh      # 56.0
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
