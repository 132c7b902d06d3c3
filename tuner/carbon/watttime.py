"""WattTime API v3 (https://api.watttime.org): *marginal* emissions (MOER, ``co2_moer``)
for a balancing-authority region such as ``CAISO_NORTH``.

Authentication: a bearer token, either given directly in ``$WATTTIME_TOKEN`` or obtained
from ``GET /login`` with HTTP basic auth (``$WATTTIME_USER`` / ``$WATTTIME_PASSWORD``);
login tokens last 30 minutes, so they are renewed after 25. Values arrive in
``lbs_co2_per_mwh`` and are converted to g/kWh (x 0.45359237).
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta

import pandas as pd

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries
from tuner.carbon.http import JsonClient, ProviderError
from tuner.carbon.series import to_utc, window

BASE_URL = "https://api.watttime.org"
G_PER_KWH_PER_LB_PER_MWH = 453.59237 / 1000.0
TOKEN_LIFETIME_S = 25 * 60
MAX_RANGE = timedelta(days=30)  # /v3/historical serves up to 32 days per request


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


class WattTimeProvider(IntensityProvider):
    """Marginal CO2 intensity of one WattTime region.

    Example::

        p = WattTimeProvider("CAISO_NORTH")   # token or user/password from the environment
        p.forecast(now, now + timedelta(hours=24)).values   # 5-minute MOER forecast
    """

    name = "watttime"
    signal = "marginal"

    def __init__(
        self,
        region: str,
        *,
        signal_type: str = "co2_moer",
        base_url: str = BASE_URL,
        **http: float,
    ) -> None:
        if not region:
            raise ValueError("carbon.region: WattTime needs a region such as 'CAISO_NORTH'")
        self.region = region
        self.signal_type = signal_type
        self._token = os.environ.get("WATTTIME_TOKEN", "")
        self._user = os.environ.get("WATTTIME_USER", "")
        self._password = os.environ.get("WATTTIME_PASSWORD", "")
        secrets = (self._token, self._password)
        self.client = JsonClient(base_url, name=self.name, secrets=secrets, **http)  # type: ignore[arg-type]
        self._login_client = JsonClient(
            base_url,
            name=self.name,
            auth=(self._user, self._password),
            secrets=secrets,
            timeout_s=self.client.timeout_s,
            retries=1,
            ttl_s=0,
        )
        self._token_time = time.monotonic() if self._token else -1e18
        self._static_token = bool(self._token)
        if self._token:
            self.client.set_header("Authorization", f"Bearer {self._token}", secret=True)
            self.client.add_secret(self._token)
        self.source = f"watttime ({region}, {signal_type})"

    def _authorise(self) -> None:
        if self._static_token or time.monotonic() - self._token_time < TOKEN_LIFETIME_S:
            return
        if not (self._user and self._password):
            raise ProviderError(
                "watttime: a token is required; set $WATTTIME_TOKEN, or $WATTTIME_USER and "
                "$WATTTIME_PASSWORD"
            )
        body = self._login_client.get("/login", cache=False)
        token = body.get("token") if isinstance(body, dict) else None
        if not token:
            raise ProviderError("watttime: login returned no token")
        self.client.add_secret(token)
        self.client.set_header("Authorization", f"Bearer {token}", secret=True)
        self._token_time = time.monotonic()

    def _get(self, path: str, **params: str) -> dict:
        self._authorise()
        body = self.client.get(
            path, {"region": self.region, "signal_type": self.signal_type, **params}
        )
        if not isinstance(body, dict):
            raise ProviderError(f"watttime: unexpected payload shape for {path}")
        return body

    @staticmethod
    def _series(body: dict, what: str) -> pd.Series:
        units = (body.get("meta") or {}).get("units", "lbs_co2_per_mwh")
        if units != "lbs_co2_per_mwh":
            raise ProviderError(f"watttime: unexpected units {units!r} in {what}")
        try:
            pairs = [
                (pd.Timestamp(p["point_time"]).tz_convert("UTC"), float(p["value"]))
                for p in body["data"]
            ]
        except (KeyError, TypeError, ValueError):
            raise ProviderError(f"watttime: malformed {what} points") from None
        if not pairs:
            raise ProviderError(f"watttime: no {what} values in the answer")
        times, values = zip(*pairs, strict=True)
        series = pd.Series(values, index=pd.DatetimeIndex(times), dtype=float)
        series = series[~series.index.duplicated(keep="last")].sort_index()
        return series * G_PER_KWH_PER_LB_PER_MWH

    def current(self) -> IntensityReading:
        # horizon_hours=0 asks /v3/forecast for the real-time value only
        values = self._series(self._get("/v3/forecast", horizon_hours="0"), "current")
        return IntensityReading(
            values.index[0].to_pydatetime(), float(values.iloc[0]), self.source, self.signal
        )

    def history(self, start: datetime, end: datetime) -> IntensitySeries:
        start_ts, end_ts = to_utc(start), to_utc(end)
        parts, lo = [], start_ts.floor("5min")
        while lo < end_ts:
            hi = min(lo + MAX_RANGE, end_ts)
            parts.append(
                self._series(self._get("/v3/historical", start=_iso(lo), end=_iso(hi)), "history")
            )
            lo = hi
        values = pd.concat(parts).sort_index()
        values = values[~values.index.duplicated(keep="last")]
        return IntensitySeries(window(values, start_ts, end_ts), self.source, self.signal)

    def forecast(self, start: datetime, end: datetime) -> IntensitySeries:
        start_ts, end_ts = to_utc(start), to_utc(end)
        # the forecast always starts now; ask for enough hours to reach ``end`` (max 72)
        ahead = (end_ts - pd.Timestamp.now(tz="UTC")) / pd.Timedelta("1h")
        hours = max(1, min(72, int(ahead) + 1))
        body = self._get("/v3/forecast", horizon_hours=str(hours))
        values = self._series(body, "forecast")
        return IntensitySeries(
            window(values, start_ts, end_ts), f"{self.source} forecast", self.signal
        )
