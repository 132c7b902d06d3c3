"""The energy-meter seam: measurement value objects and the begin/end window interface.

Modelled on Zeus's ``begin_window``/``end_window``: a window is named, opened, and
closed into a :class:`Measurement` that always says where its number came from and how
far to trust it, per component (``cpu``, ``dram``, ``gpu``) and overall.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

J_PER_KWH = 3.6e6
COMPONENTS = ("cpu", "dram", "gpu")
ABSENT = "absent"
REPORTED = "reported"  # the objective returned its own energy_kwh (tuner.study.record.REPORTED_SOURCE)
POWER_NOT_DERIVED = ("not derived: energy_kwh was reported by the objective, not metered over this trial's "
                     "runtime, so it says nothing of the trial's power")

# How far each source is trusted, highest first. The overall source of a measurement is
# taken from its least trusted class, so an estimate is never passed off as a measurement.
SOURCE_TRUST = {
    "rapl": 3,
    "nvml-energy-counter": 3,
    "nvml-power-sampled": 2,
    "cpu-time-estimate": 1,
    "dram-rss-estimate": 1,
    "user-override": 1,
    REPORTED: 0,
}


@dataclass(frozen=True)
class ComponentReading:
    """Energy of one component over a window.

    ``energy_kwh`` is ``None`` when the component could not be measured at all
    (``source`` is then ``"absent"`` and ``reasons`` says why): never a silent zero.
    ``reasons`` also lists the sources the fallback chain tried and skipped, and
    ``flags`` marks readings to treat with care (``short-window``, ``shared-device``).
    """

    component: str
    energy_kwh: float | None
    source: str
    relative_uncertainty: float | None
    reasons: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    idle_baseline_w: float | None = None

    @property
    def present(self) -> bool:
        return self.energy_kwh is not None


@dataclass(frozen=True)
class Measurement:
    """Energy used over one window.

    ``source`` names how it was obtained (``cpu-time-estimate``, ``rapl``, ``reported``,
    ...), and ``relative_uncertainty`` is the half-width of the error band as a fraction
    of ``energy_kwh`` (0.5 means the true value is believed to lie within +/-50 %).
    ``components`` holds the per-component readings it was combined from (see
    :meth:`combine`), ``hardware`` the host tags (``hw_cpu_model``, ...).
    """

    energy_kwh: float
    duration_s: float
    source: str
    relative_uncertainty: float
    cpu_time_s: float | None = None
    components: tuple[ComponentReading, ...] = ()
    hardware: Mapping[str, str] = field(default_factory=dict)
    cpu_share: float | None = None

    @classmethod
    def combine(
        cls,
        readings: Sequence[ComponentReading],
        duration_s: float,
        cpu_time_s: float | None = None,
        hardware: Mapping[str, str] | None = None,
        cpu_share: float | None = None,
    ) -> Measurement:
        """Sum the present components into one measurement.

        Overall ``source``: among present components, take the least trusted class
        (counter > sampled power > estimate, :data:`SOURCE_TRUST`), and within it the
        component holding the most energy. A total that contains any estimate is thus
        labelled with an estimate. Overall uncertainty: the components' absolute error
        bands added linearly (errors may be correlated), over the total.
        """
        present = [r for r in readings if r.present]
        total = sum(r.energy_kwh for r in present)  # type: ignore[misc]
        if not present:
            source, uncertainty = ABSENT, math.nan
        else:
            weakest = min(SOURCE_TRUST.get(r.source, 1) for r in present)
            candidates = [r for r in present if SOURCE_TRUST.get(r.source, 1) == weakest]
            source = max(candidates, key=lambda r: r.energy_kwh).source  # type: ignore[arg-type, return-value]
            uncertainty = _combined_uncertainty(present, total)
        return cls(
            energy_kwh=total,
            duration_s=duration_s,
            source=source,
            relative_uncertainty=uncertainty,
            cpu_time_s=cpu_time_s,
            components=tuple(readings),
            hardware=dict(hardware or {}),
            cpu_share=cpu_share,
        )

    @property
    def avg_power_w(self) -> float:
        """Mean power over the window; 0 for an empty window.

        NaN for energy the objective reported (source ``reported``): that figure was not
        metered over this window, and a replayed trace's kWh over the objective's few
        milliseconds read as 1e8-1e9 W.
        """
        if self.source == REPORTED:
            return math.nan
        return self.energy_kwh * J_PER_KWH / self.duration_s if self.duration_s > 0 else 0.0

    def component(self, name: str) -> ComponentReading | None:
        """The reading for ``cpu``, ``dram`` or ``gpu``, if this meter has one."""
        return next((r for r in self.components if r.component == name), None)

    def as_record(self) -> dict[str, Any]:
        """Flat fields for a trial's result row. Keys starting ``energy_`` or ``hw_``, and
        ``duration_s``, ``avg_power_w`` and ``cpu_time_s``, are carried to the trials table
        and MLflow as they are (numbers as metrics, strings as tags). An absent
        component has no ``energy_<c>_kwh`` key but ``energy_source_<c> = "absent"``
        and its reason in ``energy_fallback_<c>``."""
        record: dict[str, Any] = {
            "energy_kwh": self.energy_kwh,
            "energy_source": self.source,
            "energy_uncertainty": self.relative_uncertainty,
            "duration_s": self.duration_s,
            "avg_power_w": self.avg_power_w,
            "cpu_time_s": self.cpu_time_s,
        }
        flags: list[str] = []
        for reading in self.components:
            c = reading.component
            record[f"energy_source_{c}"] = reading.source
            if reading.present:
                record[f"energy_{c}_kwh"] = reading.energy_kwh
                record[f"energy_uncertainty_{c}"] = reading.relative_uncertainty
            if reading.reasons:
                record[f"energy_fallback_{c}"] = "; ".join(reading.reasons)
            if reading.idle_baseline_w is not None:
                record[f"energy_idle_baseline_w_{c}"] = reading.idle_baseline_w
            flags += [f"{c}:{flag}" for flag in reading.flags]
        if flags:
            record["energy_flags"] = ",".join(flags)
        if self.cpu_share is not None:
            record["energy_cpu_share"] = self.cpu_share
        if self.source == REPORTED:
            record["energy_power_note"] = POWER_NOT_DERIVED
        record.update(self.hardware)
        return record


def _combined_uncertainty(present: Sequence[ComponentReading], total: float) -> float:
    bands = [r.relative_uncertainty if r.relative_uncertainty is not None else math.nan for r in present]
    if total <= 0:
        return max(bands)
    return sum(r.energy_kwh * u for r, u in zip(present, bands, strict=True)) / total  # type: ignore[operator]


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

    def close(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release threads and handles. Meters without any need not override this."""
