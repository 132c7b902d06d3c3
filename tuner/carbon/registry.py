"""Build the configured provider: one place that maps ``carbon:`` settings to a class.

Every provider except ``static`` is wrapped in :class:`FallbackProvider`, with the static
figure for ``zone`` (or the world average) behind it. ``step`` resamples whatever the
provider returns, so schedulers and accounting see one regular grid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries
from tuner.carbon.fallback import FallbackProvider
from tuner.carbon.series import resample
from tuner.carbon.static import StaticProvider
from tuner.config import CarbonSettings


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


PROVIDERS = ("static", "csv", "ukci", "electricitymaps", "watttime")


def build_provider(
    settings: CarbonSettings,
    *,
    clock: Callable[[], datetime] | None = None,
    horizon: timedelta | None = None,
) -> IntensityProvider:
    """The provider ``settings`` describe, with its static fallback.

    ``clock`` only matters for the CSV provider, whose "now" may be a replay clock. A CSV
    must cover that "now" (else :class:`~tuner.errors.ConfigError`) and is warned about
    when it ends before ``now + horizon`` (default: ``carbon.deadline``).
    """
    static = StaticProvider(settings.zone, settings.g_per_kwh)
    if settings.provider == "static":
        return static
    http = {
        "timeout_s": settings.timeout_s,
        "retries": settings.retries,
        "ttl_s": settings.cache_ttl_s,
    }
    if settings.base_url:
        http["base_url"] = settings.base_url  # type: ignore[assignment]
    primary: IntensityProvider
    if settings.provider == "csv":
        from tuner.carbon.csvfile import CsvProvider

        assert settings.csv_path is not None  # checked by CarbonSettings
        csv = CsvProvider(
            settings.csv_path.expanduser(),
            timezone_name=settings.csv_timezone,
            lifecycle=settings.lifecycle,
            clock=clock,
        )
        if horizon is None and settings.deadline_s is not None:
            horizon = timedelta(seconds=settings.deadline_s)
        csv.check_covers((clock or _utc_now)(), horizon)
        primary = csv
    elif settings.provider == "ukci":
        from tuner.carbon.ukci import UkCarbonIntensityProvider

        region = int(settings.region) if settings.region else None
        primary = UkCarbonIntensityProvider(region, **http)  # type: ignore[arg-type]
    elif settings.provider == "electricitymaps":
        from tuner.carbon.electricitymaps import ElectricityMapsProvider

        factor = "lifecycle" if settings.lifecycle else "direct"
        assert settings.zone is not None
        primary = ElectricityMapsProvider(
            settings.zone, emission_factor_type=factor, **http  # type: ignore[arg-type]
        )
    else:
        from tuner.carbon.watttime import WattTimeProvider

        assert settings.region is not None
        primary = WattTimeProvider(settings.region, **http)  # type: ignore[arg-type]
    if settings.step:
        primary = Resampled(primary, settings.step)
    return FallbackProvider(primary, static)


class Resampled(IntensityProvider):
    """Any provider's series re-expressed on a regular ``step`` (exact time-weighted means)."""

    def __init__(self, inner: IntensityProvider, step: str) -> None:
        self.inner, self.step = inner, step
        self.name, self.signal = inner.name, inner.signal
        self.client = getattr(inner, "client", None)
        self.is_file = bool(getattr(inner, "is_file", False))

    def current(self) -> IntensityReading:
        return self.inner.current()

    def _resampled(self, series: IntensitySeries) -> IntensitySeries:
        if series.values.empty:
            return series
        return dataclasses.replace(series, values=resample(series.values, self.step))

    def history(self, start: datetime, end: datetime) -> IntensitySeries:
        return self._resampled(self.inner.history(start, end))

    def forecast(self, start: datetime, end: datetime) -> IntensitySeries:
        return self._resampled(self.inner.forecast(start, end))
