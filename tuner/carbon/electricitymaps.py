"""Electricity Maps API v3 (https://api.electricitymaps.com/v3): latest, history and
forecast for any zone (``DE``, ``FR``, ``US-CAL-CISO``...). The token is read from the
environment (``ELECTRICITYMAPS_TOKEN`` by default) and sent only as the ``auth-token``
header; it is never logged, stored or shown.

``history`` uses ``/carbon-intensity/past-range`` (at most 10 days per request, so longer
spans are split); ``forecast`` uses ``/carbon-intensity/forecast`` (paid plans).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import pandas as pd

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries
from tuner.carbon.http import JsonClient, ProviderError
from tuner.carbon.series import to_utc, window

BASE_URL = "https://api.electricitymaps.com/v3"
TOKEN_ENV = "ELECTRICITYMAPS_TOKEN"
MAX_RANGE = timedelta(days=10)


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


class ElectricityMapsProvider(IntensityProvider):
    """Average intensity for one Electricity Maps zone.

    ``emission_factor_type`` is ``lifecycle`` (the API's default) or ``direct``.

    Example::

        p = ElectricityMapsProvider("DE")          # token from $ELECTRICITYMAPS_TOKEN
        p.current().g_per_kwh
    """

    name = "electricitymaps"
    signal = "average"

    def __init__(
        self,
        zone: str,
        *,
        token_env: str = TOKEN_ENV,
        emission_factor_type: str = "lifecycle",
        base_url: str = BASE_URL,
        **http: float,
    ) -> None:
        if not zone:
            raise ValueError("carbon.zone: Electricity Maps needs a zone such as 'DE'")
        if emission_factor_type not in ("lifecycle", "direct"):
            raise ValueError(
                f"carbon.emission_factor_type: 'lifecycle' or 'direct', got {emission_factor_type!r}"
            )
        token = os.environ.get(token_env, "")
        self.zone = zone
        self.factor = emission_factor_type
        self.client = JsonClient(base_url, name=self.name, **http)  # type: ignore[arg-type]
        self.client.set_header("auth-token", token, secret=True)
        self._token_env, self._has_token = token_env, bool(token)
        self.source = f"electricitymaps ({zone}, {emission_factor_type})"

    def _get(self, path: str, **params: str) -> dict:
        if not self._has_token:
            raise ProviderError(f"{self.name}: no token; set ${self._token_env}")
        body = self.client.get(
            path, {"zone": self.zone, "emissionFactorType": self.factor, **params}
        )
        if not isinstance(body, dict):
            raise ProviderError(f"{self.name}: unexpected payload shape for {path}")
        return body

    @staticmethod
    def _series(points: object, what: str) -> pd.Series:
        try:
            pairs = [
                (pd.Timestamp(p["datetime"]).tz_convert("UTC"), float(p["carbonIntensity"]))
                for p in points  # type: ignore[union-attr]
                if p.get("carbonIntensity") is not None
            ]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ProviderError(f"electricitymaps: malformed {what} points") from None
        if not pairs:
            raise ProviderError(f"electricitymaps: no {what} values in the answer")
        times, values = zip(*pairs, strict=True)
        series = pd.Series(values, index=pd.DatetimeIndex(times), dtype=float)
        return series[~series.index.duplicated(keep="last")].sort_index()

    def current(self) -> IntensityReading:
        body = self._get("/carbon-intensity/latest")
        latest = self._series([body], "latest")
        return IntensityReading(
            latest.index[-1].to_pydatetime(), float(latest.iloc[-1]), self.source, self.signal
        )

    def history(self, start: datetime, end: datetime) -> IntensitySeries:
        start_ts, end_ts = to_utc(start), to_utc(end)
        parts, lo = [], start_ts.floor("1h")
        while lo < end_ts:
            hi = min(lo + MAX_RANGE, end_ts)
            body = self._get("/carbon-intensity/past-range", start=_iso(lo), end=_iso(hi))
            parts.append(self._series(body.get("data"), "history"))
            lo = hi
        values = pd.concat(parts).sort_index()
        values = values[~values.index.duplicated(keep="last")]
        return IntensitySeries(window(values, start_ts, end_ts), self.source, self.signal)

    def forecast(self, start: datetime, end: datetime) -> IntensitySeries:
        start_ts, end_ts = to_utc(start), to_utc(end)
        body = self._get("/carbon-intensity/forecast")
        values = self._series(body.get("forecast"), "forecast")
        return IntensitySeries(
            window(values, start_ts, end_ts), f"{self.source} forecast", self.signal
        )
