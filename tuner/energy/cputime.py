"""Energy estimated from CPU time, for machines with no readable energy counter.

Energy = CPU seconds of the process tree x watts per busy core. This is an estimate,
never a measurement: it ignores idle and uncore power, DRAM and frequency scaling, so it
is tagged ``cpu-time-estimate`` with a +/-50 % band. The chain meter uses it when RAPL is
absent or unreadable; ``watts_per_core`` comes from the user or :mod:`tuner.energy.tdp`.
"""

from __future__ import annotations

import os

import psutil

from tuner.energy.counter import Delta, EnergyCounter

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


class CpuTimeCounter(EnergyCounter):
    """CPU seconds of a process tree x ``watts_per_core``, as joules."""

    component = "cpu"
    source = SOURCE
    relative_uncertainty = RELATIVE_UNCERTAINTY

    def __init__(self, watts_per_core: float, pid: int | None = None) -> None:
        if watts_per_core <= 0:
            raise ValueError(f"watts_per_core must be > 0, got {watts_per_core}")
        self.watts_per_core = watts_per_core
        self._pid = pid

    def snapshot(self) -> float:
        return process_tree_cpu_seconds(self._pid)

    def since(self, start: float) -> Delta:
        return Delta(max(0.0, process_tree_cpu_seconds(self._pid) - start) * self.watts_per_core)
