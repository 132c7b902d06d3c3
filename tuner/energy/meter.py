"""The chain meter: one counter per component, attribution, idle baseline, sampling.

:func:`tuner.energy.make_meter` builds it from the energy settings with the fallback
chain; it can also be built directly from counters (tests, custom hardware).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner.energy.attribution import cpu_share, machine_busy_cpu_seconds, subtract_idle
from tuner.energy.base import (
    ABSENT,
    COMPONENTS,
    J_PER_KWH,
    ComponentReading,
    EnergyMeter,
    Measurement,
)
from tuner.energy.counter import EnergyCounter
from tuner.energy.cputime import CpuTimeCounter, TreeCpuClock

DEFAULT_SAMPLE_INTERVAL_S = 0.1


@dataclass
class _Window:
    wall: float
    own_cpu: float
    machine_cpu: float
    snapshots: dict[str, Any]
    last_good: dict[str, ComponentReading] = field(default_factory=dict)  # kept if a device is lost


class ChainMeter(EnergyMeter):
    """Measures windows with one :class:`EnergyCounter` per component.

    Components without a counter are reported ``absent`` with their ``reasons``.
    ``package_level`` counters get this process tree's CPU-time share when
    ``attribute`` is true; ``idle_watts`` (per component) are subtracted in proportion.
    Counters that integrate samples are polled every ``sample_interval_s`` by one
    daemon thread, running only while a window is open.
    """

    def __init__(
        self,
        counters: Sequence[EnergyCounter],
        *,
        reasons: Mapping[str, Sequence[str]] | None = None,
        hardware: Mapping[str, str] | None = None,
        attribute: bool = True,
        idle_watts: Mapping[str, float] | None = None,
        sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
        pid: int | None = None,
        own_cpu_seconds: Callable[[], float] | None = None,
        machine_cpu_seconds: Callable[[], float] = machine_busy_cpu_seconds,
        components: Sequence[str] = COMPONENTS,
    ) -> None:
        if sample_interval_s <= 0:
            raise ValueError(f"sample_interval_s must be > 0, got {sample_interval_s}")
        self.counters = {c.component: c for c in counters}
        self.reasons = {k: tuple(v) for k, v in (reasons or {}).items()}
        self.hardware = dict(hardware or {})
        self.attribute = attribute
        self.idle_watts = dict(idle_watts or {})
        self.sample_interval_s = sample_interval_s
        self.components = [c for c in components if c in self.counters or c in self.reasons]
        self._clock = _shared_clock(counters) or TreeCpuClock(pid)
        self._own_cpu = own_cpu_seconds or self._clock
        self._machine_cpu = machine_cpu_seconds
        self._open: dict[str, _Window] = {}
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self.sampler_errors: list[str] = []
        self.sampler_cpu_s = 0.0  # the sampler thread's own CPU time: the meter's cost

    # ------------------------------------------------------------------ windows

    def begin_window(self, name: str) -> None:
        if name in self._open:
            raise ValueError(f"energy window '{name}' is already open")
        with self._clock.held():
            self._begin(name)
        self._start_sampler()

    def _begin(self, name: str) -> None:
        self._open[name] = _Window(
            wall=time.monotonic(),
            own_cpu=self._own_cpu(),
            machine_cpu=self._machine_cpu(),
            snapshots={c: counter.snapshot() for c, counter in self.counters.items()},
        )

    def read_window(self, name: str) -> Measurement:
        try:
            window = self._open[name]
        except KeyError:
            raise ValueError(f"energy window '{name}' is not open") from None
        with self._clock.held():
            return self._read(window)

    def _read(self, window: _Window) -> Measurement:
        duration = time.monotonic() - window.wall
        own = max(0.0, self._own_cpu() - window.own_cpu)
        share = cpu_share(own, self._machine_cpu() - window.machine_cpu) if self.attribute else 1.0
        attributed = False
        readings = []
        for component in self.components:
            counter = self.counters.get(component)
            if counter is None:
                readings.append(ComponentReading(component, None, ABSENT, None, self.reasons.get(component, ())))
                continue
            try:
                delta = counter.since(window.snapshots[component])
            except Exception as exc:  # noqa: BLE001 - a device lost mid-trial: absent, with why
                reason = f"{counter.source} read failed: {type(exc).__name__}: {exc}"
                readings.append(_lost(component, window.last_good.get(component), (*self.reasons.get(component, ()), reason)))
                continue
            joules, part = delta.joules, 1.0
            if counter.package_level and self.attribute:
                joules, part, attributed = joules * share, share, True
            idle = self.idle_watts.get(component)
            if idle is not None:
                joules = subtract_idle(joules, idle, duration, part)
            readings.append(ComponentReading(
                component=component,
                energy_kwh=joules / J_PER_KWH,
                source=counter.source,
                relative_uncertainty=delta.uncertainty if delta.uncertainty is not None else counter.relative_uncertainty,
                reasons=self.reasons.get(component, ()),
                flags=delta.flags,
                idle_baseline_w=idle,
            ))
            window.last_good[component] = readings[-1]
        return Measurement.combine(
            readings, duration, cpu_time_s=own, hardware=self.hardware, cpu_share=share if attributed else None
        )

    def end_window(self, name: str) -> Measurement:
        measurement = self.read_window(name)
        del self._open[name]
        if not self._open:
            self._stop_sampler()
        return measurement

    def close(self) -> None:
        """Stop the sampler and release the counters' handles."""
        self._open.clear()
        self._stop_sampler()
        for counter in self.counters.values():
            counter.close()

    # ------------------------------------------------------------------ sampling

    def _start_sampler(self) -> None:
        polled = [c for c in self.counters.values() if c.needs_polling]
        if not polled or (self._sampler is not None and self._sampler.is_alive()):
            return
        self._stop.clear()
        self._sampler = threading.Thread(target=self._sample, args=(polled,), name="greentune-energy-sampler", daemon=True)
        self._sampler.start()

    def _sample(self, counters: list[EnergyCounter]) -> None:
        start = time.thread_time()
        while not self._stop.wait(self.sample_interval_s):
            for counter in counters:
                try:
                    counter.poll()
                except Exception as exc:  # noqa: BLE001 - a sampling hiccup must not kill the trial
                    self.sampler_errors.append(f"{counter.component}: {exc}")
        self.sampler_cpu_s += time.thread_time() - start

    def _stop_sampler(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
            self._sampler = None


def _shared_clock(counters: Sequence[EnergyCounter]) -> TreeCpuClock | None:
    """The CPU-time counter's clock, so ``cpu_time_s`` and its energy agree exactly."""
    return next((c.clock for c in counters if isinstance(c, CpuTimeCounter)), None)


class CpuTimeMeter(ChainMeter):
    """Only the CPU-time estimate: CPU time of this process tree x ``watts_per_core``."""

    def __init__(self, watts_per_core: float, pid: int | None = None) -> None:
        super().__init__([CpuTimeCounter(watts_per_core, TreeCpuClock(pid))], pid=pid)


def _lost(component: str, last: ComponentReading | None, reasons: tuple[str, ...]) -> ComponentReading:
    """A component that stopped answering: the energy it had measured in this window stays
    (flagged ``lost-mid-window``; what it drew after its last good read is not known), else absent."""
    if last is None or last.energy_kwh is None:
        return ComponentReading(component, None, ABSENT, None, reasons)
    return dataclasses.replace(last, reasons=(*reasons, "energy up to the last good read kept"),
                               flags=(*last.flags, "lost-mid-window"))
