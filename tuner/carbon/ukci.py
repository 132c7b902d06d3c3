"""UK Carbon Intensity API (National Grid ESO, https://carbonintensity.org.uk): national
or regional Great Britain intensity in half-hour slots, forecast up to 48 h, no key.

National slots carry both a ``forecast`` and, once measured, an ``actual``; history uses
the actual where there is one. Regional slots carry only the forecast (the API publishes
no regional actuals), which the source string says.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries
from tuner.carbon.http import JsonClient, ProviderError
from tuner.carbon.series import to_utc, window

BASE_URL = "https://api.carbonintensity.org.uk"
MAX_RANGE = timedelta(days=14)  # the API's longest from/to range per request
FORECAST_HORIZON = timedelta(hours=48)


def _stamp(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%MZ")


class UkCarbonIntensityProvider(IntensityProvider):
    """Great Britain, nationally (``region_id=None``) or for one region (1-17, e.g. 13 =
    London; see the API docs for the list).

    Example::

        p = UkCarbonIntensityProvider(region_id=13)
        p.forecast(now, now + timedelta(hours=24)).values   # half-hourly forecast
    """

    name = "ukci"
    signal = "average"

    def __init__(
        self, region_id: int | None = None, *, base_url: str = BASE_URL, **http: float
    ) -> None:
        if region_id is not None and not 1 <= int(region_id) <= 17:
            raise ValueError(f"carbon.region: UK region ids run 1-17, got {region_id}")
        self.region_id = region_id
        self.client = JsonClient(base_url, name=self.name, **http)  # type: ignore[arg-type]
        where = "national" if region_id is None else f"region {region_id}"
        self.source = f"ukci ({where}, api.carbonintensity.org.uk)"

    # ------------------------------------------------------------------ parsing

    def _slots(self, body: object) -> list[dict]:
        """The list of ``{from, to, intensity}`` slots in any of the API's shapes."""
        try:
            data = body["data"]  # type: ignore[index]
            if self.region_id is None:
                return list(data)
            region = data[0] if isinstance(data, list) else data  # regionid vs range shape
            return list(region["data"])
        except (KeyError, IndexError, TypeError):
            raise ProviderError(f"{self.name}: unexpected payload shape") from None

    def _series(self, slots: list[dict], prefer_actual: bool) -> pd.Series:
        times, values = [], []
        for slot in slots:
            intensity = slot.get("intensity") or {}
            value = intensity.get("actual") if prefer_actual else None
            if value is None:
                value = intensity.get("forecast")
            if value is None:
                continue
            times.append(pd.Timestamp(slot["from"]).tz_convert("UTC"))
            values.append(float(value))
        if not values:
            raise ProviderError(f"{self.name}: no intensity values in the answer")
        series = pd.Series(values, index=pd.DatetimeIndex(times))
        return series[~series.index.duplicated(keep="last")].sort_index()

    # ------------------------------------------------------------------ interface

    def current(self) -> IntensityReading:
        path = "/intensity" if self.region_id is None else f"/regional/regionid/{self.region_id}"
        slots = self._slots(self.client.get(path))
        series = self._series(slots, prefer_actual=True)
        return IntensityReading(
            series.index[-1].to_pydatetime(), float(series.iloc[-1]), self.source, self.signal
        )

    def history(self, start: datetime, end: datetime) -> IntensitySeries:
        start_ts, end_ts = to_utc(start), to_utc(end)
        parts = []
        lo = start_ts.floor("30min")
        while lo < end_ts:
            hi = min(lo + MAX_RANGE, end_ts)
            parts.append(self._range(lo, hi))
            lo = hi
        values = pd.concat(parts).sort_index()
        values = values[~values.index.duplicated(keep="last")]
        return IntensitySeries(window(values, start_ts, end_ts), self.source, self.signal)

    def _range(self, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.Series:
        span = f"{_stamp(lo)}/{_stamp(hi)}"
        path = (
            f"/intensity/{span}"
            if self.region_id is None
            else f"/regional/intensity/{span}/regionid/{self.region_id}"
        )
        return self._series(self._slots(self.client.get(path)), prefer_actual=True)

    def forecast(self, start: datetime, end: datetime) -> IntensitySeries:
        start_ts, end_ts = to_utc(start), to_utc(end)
        base = _stamp(start_ts.floor("30min"))
        path = (
            f"/intensity/{base}/fw48h"
            if self.region_id is None
            else f"/regional/intensity/{base}/fw48h/regionid/{self.region_id}"
        )
        values = self._series(self._slots(self.client.get(path)), prefer_actual=False)
        return IntensitySeries(
            window(values, start_ts, end_ts), f"{self.source} forecast", self.signal
        )
