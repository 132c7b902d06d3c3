"""One component's energy source: a cumulative counter the chain meter takes deltas of.

Hardware counters (RAPL, NVML) and estimates (CPU time, RSS, a fixed power) all look the
same here: a snapshot now, and the joules since an earlier snapshot. Sources that must
integrate samples (power, memory in use) or catch counter wraparound do so in
:meth:`EnergyCounter.poll`, which the chain meter's sampler thread calls every
sampling period while a window is open.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Delta:
    """Joules between two snapshots, with flags such as ``short-window``."""

    joules: float
    flags: tuple[str, ...] = ()
    uncertainty: float | None = None  # overrides the counter's own when set


class EnergyCounter(abc.ABC):
    """A cumulative energy source for one component. Example::

        class FixedPower(EnergyCounter):
            component, source, relative_uncertainty = "cpu", "user-override", 0.3
            def snapshot(self):
                return time.monotonic()
            def since(self, start):
                return Delta(20.0 * (time.monotonic() - start))

    ``package_level`` counters see the whole machine (RAPL), so the chain meter gives a
    window only its CPU-time share of them.
    """

    component: str
    source: str
    relative_uncertainty: float
    package_level: bool = False
    needs_polling: bool = False

    @abc.abstractmethod
    def snapshot(self) -> Any:
        """An opaque reading to take deltas from."""

    @abc.abstractmethod
    def since(self, start: Any) -> Delta:
        """Joules used between ``start`` (a :meth:`snapshot`) and now."""

    def poll(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Called every sampling period while a window is open; integrate or catch wraps."""

    def close(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release handles."""


class ConstantPowerCounter(EnergyCounter):
    """A user-given power for one component: watts x wall time, tagged ``user-override``.

    The uncertainty is the user's; ``nan`` (unknown) when they do not give one.
    """

    source = "user-override"

    def __init__(self, component: str, watts: float, relative_uncertainty: float) -> None:
        self.component = component
        self.watts = watts
        self.relative_uncertainty = relative_uncertainty

    def snapshot(self) -> float:
        return time.monotonic()

    def since(self, start: float) -> Delta:
        return Delta(self.watts * (time.monotonic() - start))
