"""Never let a carbon API stop a study: any failure answers with the static figure.

The answer says so twice: a logged warning, and ``fallback_reason`` on the reading or
series, which accounting records next to the CO2 it computed. After a failure the
primary is left alone for ``cooldown_s`` so a dead API does not cost a timeout per call.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries
from tuner.carbon.static import StaticProvider

log = logging.getLogger(__name__)
T = TypeVar("T", IntensityReading, IntensitySeries)


class FallbackProvider(IntensityProvider):
    """``primary``, or ``fallback`` (static) whenever ``primary`` raises.

    Example::

        p = FallbackProvider(UkCarbonIntensityProvider(), StaticProvider("GB"))
        p.current()      # static value, with fallback_reason set, if the API is down
    """

    def __init__(
        self, primary: IntensityProvider, fallback: StaticProvider, *, cooldown_s: float = 60.0
    ) -> None:
        self.primary, self.fallback = primary, fallback
        self.name, self.signal = primary.name, primary.signal
        self.cooldown_s = cooldown_s
        self._failed_at: float | None = None
        self._last_reason = "not yet failed"
        # a trace file is read again at no cost and never "comes back": no cooldown
        self.is_file = bool(getattr(primary, "is_file", False))

    def _redact(self, text: str) -> str:
        client = getattr(self.primary, "client", None)
        return client.redact(text) if client is not None else text

    def _call(self, what: str, primary: Callable[[], T], fallback: Callable[[], T]) -> T:
        cooling = (
            not self.is_file
            and self._failed_at is not None and time.monotonic() - self._failed_at < self.cooldown_s
        )
        if not cooling:
            try:
                result = primary()
                self._failed_at = None
                return result
            except Exception as exc:  # noqa: BLE001 - any failure must fall back
                self._failed_at = time.monotonic()
                self._last_reason = self._redact(f"{type(exc).__name__}: {exc}")
                reason = self._reason(what)
                log.warning("carbon intensity: %s", reason)
        elif self.is_file:
            reason = self._reason(what)
        else:
            reason = self._reason(what) + f" (retrying the API after {self.cooldown_s:.0f} s)"
        return dataclasses.replace(fallback(), fallback_reason=reason)

    def _reason(self, what: str) -> str:
        if self.is_file:  # the file simply does not reach this time: no failure, no retry
            return (
                f"{self.primary.name} {what}: {self._last_reason.split(': ', 1)[-1]}; using "
                f"static {self.fallback.g_per_kwh:g} gCO2/kWh ({self.fallback.label}) instead"
            )
        return (
            f"{self.primary.name} {what} failed ({self._last_reason}); using static "
            f"{self.fallback.g_per_kwh:g} gCO2/kWh ({self.fallback.label}) instead"
        )

    def current(self) -> IntensityReading:
        return self._call("current", self.primary.current, self.fallback.current)

    def history(self, start: datetime, end: datetime) -> IntensitySeries:
        return self._call(
            "history",
            lambda: self.primary.history(start, end),
            lambda: self.fallback.history(start, end),
        )

    def forecast(self, start: datetime, end: datetime) -> IntensitySeries:
        return self._call(
            "forecast",
            lambda: self.primary.forecast(start, end),
            lambda: self.fallback.forecast(start, end),
        )
