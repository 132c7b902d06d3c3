"""The carbon-intensity seam: readings, series and the provider interface.

Every figure is grid carbon intensity in gCO2/kWh and carries where it came from and
whether it is an *average* (all generation) or *marginal* (the plant that responds to
extra load) intensity: the two answer different questions and must never be mixed up.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import pandas as pd

Signal = Literal["average", "marginal"]


@dataclass(frozen=True)
class IntensityReading:
    """One intensity value at one time (UTC, timezone-aware)."""

    time: datetime
    g_per_kwh: float
    source: str
    signal: Signal
    fallback_reason: str | None = None  # set when a fallback provider answered instead


@dataclass(frozen=True)
class IntensitySeries:
    """Intensity over time: ``values`` is a float Series (gCO2/kWh) on a sorted, tz-aware
    UTC ``DatetimeIndex``; each value holds from its timestamp until the next one."""

    values: pd.Series
    source: str
    signal: Signal
    fallback_reason: str | None = None


class IntensityProvider(abc.ABC):
    """A source of grid carbon intensity. Implement the three methods; times are UTC-aware.

    Example::

        class Constant(IntensityProvider):
            name, signal = "constant", "average"
            def __init__(self, g):
                self.g = g
            def current(self):
                return IntensityReading(datetime.now(timezone.utc), self.g, self.name, self.signal)
            def history(self, start, end):
                idx = pd.date_range(start, end, freq="1h", inclusive="left")
                return IntensitySeries(pd.Series(self.g, index=idx), self.name, self.signal)
            forecast = history
    """

    name: str
    signal: Signal

    @abc.abstractmethod
    def current(self) -> IntensityReading:
        """The intensity now."""

    @abc.abstractmethod
    def history(self, start: datetime, end: datetime) -> IntensitySeries:
        """Observed intensity over ``[start, end)``."""

    @abc.abstractmethod
    def forecast(self, start: datetime, end: datetime) -> IntensitySeries:
        """Forecast intensity over ``[start, end)``; may be shorter if the source forecasts less."""
