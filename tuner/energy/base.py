"""The energy-meter seam: a measurement value object and the begin/end window interface.

Modelled on Zeus's ``begin_window``/``end_window``: a window is named, opened, and
closed into a :class:`Measurement` that always says where its number came from and how
far to trust it. Counter-based meters (RAPL, NVML) implement the same interface.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Measurement:
    """Energy used over one window.

    ``source`` names how it was obtained (``cpu-time-estimate``, ``reported``, ...), and
    ``relative_uncertainty`` is the half-width of the error band as a fraction of
    ``energy_kwh`` (0.5 means the true value is believed to lie within +/-50 %).
    """

    energy_kwh: float
    duration_s: float
    source: str
    relative_uncertainty: float
    cpu_time_s: float | None = None

    @property
    def avg_power_w(self) -> float:
        """Mean power over the window; 0 for an empty window."""
        return self.energy_kwh * J_PER_KWH / self.duration_s if self.duration_s > 0 else 0.0

    def as_record(self) -> dict[str, Any]:
        """Flat fields for a trial's result row. Keys starting ``energy_`` or ``hw_``, and
        ``duration_s``, ``avg_power_w`` and ``cpu_time_s``, are carried to the trials table
        and MLflow as they are, so a richer meter only has to add keys here."""
        return {
            "energy_kwh": self.energy_kwh,
            "energy_source": self.source,
            "energy_uncertainty": self.relative_uncertainty,
            "duration_s": self.duration_s,
            "avg_power_w": self.avg_power_w,
            "cpu_time_s": self.cpu_time_s,
        }


class EnergyMeter(abc.ABC):
    """Measures the energy of named windows.

    Implement :meth:`begin_window`, :meth:`read_window` and :meth:`end_window`; a window
    may be read any number of times while open (the trial wrapper does so to report live
    energy), and is closed exactly once. Example::

        class ConstantPowerMeter(EnergyMeter):
            def __init__(self, watts):
                self.watts, self.starts = watts, {}
            def begin_window(self, name):
                self.starts[name] = time.monotonic()
            def read_window(self, name):
                dt = time.monotonic() - self.starts[name]
                return Measurement(self.watts * dt / J_PER_KWH, dt, "constant", 0.2)
            def end_window(self, name):
                measurement = self.read_window(name)
                del self.starts[name]
                return measurement
    """

    @abc.abstractmethod
    def begin_window(self, name: str) -> None:
        """Start measuring a window called ``name``."""

    @abc.abstractmethod
    def read_window(self, name: str) -> Measurement:
        """Energy used so far in the open window ``name``."""

    @abc.abstractmethod
    def end_window(self, name: str) -> Measurement:
        """Close window ``name`` and return its energy."""
