"""Energy estimated from CPU time, for machines with no energy counter.

Energy = CPU seconds of the process tree x watts per busy core. This is an estimate,
never a measurement: it ignores idle and uncore power, DRAM and frequency scaling, so it
is tagged ``cpu-time-estimate`` with a +/-50 % band. Counter-based meters replace it where
RAPL or NVML exist.
"""

from __future__ import annotations

import os
import time

import psutil

from tuner.energy.base import J_PER_KWH, EnergyMeter, Measurement

SOURCE = "cpu-time-estimate"
RELATIVE_UNCERTAINTY = 0.5


def process_tree_cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process and its live children.

    Children that have exited and been waited for are included in the parent's
    ``children_user``/``children_system`` times, so nothing that finished is dropped.
    """
    root = psutil.Process(pid or os.getpid())
    total = _cpu_seconds(root, with_reaped_children=True)
    for child in root.children(recursive=True):
        try:
            total += _cpu_seconds(child, with_reaped_children=False)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # exited between listing and reading: its time moved to the parent
    return total


def _cpu_seconds(proc: psutil.Process, with_reaped_children: bool) -> float:
    times = proc.cpu_times()
    seconds = times.user + times.system
    if with_reaped_children:
        seconds += times.children_user + times.children_system
    return seconds


class CpuTimeMeter(EnergyMeter):
    """Estimate energy as CPU time of this process tree x ``watts_per_core``."""

    def __init__(self, watts_per_core: float, pid: int | None = None) -> None:
        if watts_per_core <= 0:
            raise ValueError(f"watts_per_core must be > 0, got {watts_per_core}")
        self.watts_per_core = watts_per_core
        self._pid = pid
        self._open: dict[str, tuple[float, float]] = {}

    def begin_window(self, name: str) -> None:
        if name in self._open:
            raise ValueError(f"energy window '{name}' is already open")
        self._open[name] = (time.monotonic(), process_tree_cpu_seconds(self._pid))

    def read_window(self, name: str) -> Measurement:
        try:
            start_wall, start_cpu = self._open[name]
        except KeyError:
            raise ValueError(f"energy window '{name}' is not open") from None
        cpu_s = max(0.0, process_tree_cpu_seconds(self._pid) - start_cpu)
        return Measurement(
            energy_kwh=cpu_s * self.watts_per_core / J_PER_KWH,
            duration_s=time.monotonic() - start_wall,
            source=SOURCE,
            relative_uncertainty=RELATIVE_UNCERTAINTY,
            cpu_time_s=cpu_s,
        )

    def end_window(self, name: str) -> Measurement:
        measurement = self.read_window(name)
        del self._open[name]
        return measurement
