"""Energy estimated from CPU time, for machines with no readable energy counter.

Energy = CPU seconds of the process tree x watts per busy core. This is an estimate,
never a measurement: it ignores idle and uncore power, DRAM and frequency scaling, so it
is tagged ``cpu-time-estimate`` with a +/-50 % band. The chain meter uses it when RAPL is
absent or unreadable; ``watts_per_core`` comes from the user or :mod:`tuner.energy.tdp`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

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


class TreeCpuClock:
    """CPU seconds of a process tree, held fixed while the chain meter reads a window.

    The chain meter and the CPU-time counter share one, so a window's ``cpu_time_s``
    and its CPU-time energy come from the same reading (and the tree is walked once).
    """

    def __init__(self, pid: int | None = None) -> None:
        self._pid = pid
        self._held: float | None = None

    def __call__(self) -> float:
        held = self._held
        return held if held is not None else process_tree_cpu_seconds(self._pid)

    @contextmanager
    def held(self) -> Iterator[float]:
        """Read once; every call inside the block returns that reading."""
        self._held = process_tree_cpu_seconds(self._pid)
        try:
            yield self._held
        finally:
            self._held = None


class CpuTimeCounter(EnergyCounter):
    """CPU seconds of a process tree x ``watts_per_core``, as joules."""

    component = "cpu"
    source = SOURCE
    relative_uncertainty = RELATIVE_UNCERTAINTY

    def __init__(self, watts_per_core: float, clock: TreeCpuClock | None = None) -> None:
        if watts_per_core <= 0:
            raise ValueError(f"watts_per_core must be > 0, got {watts_per_core}")
        self.watts_per_core = watts_per_core
        self.clock = clock or TreeCpuClock()

    def snapshot(self) -> float:
        return self.clock()

    def since(self, start: float) -> Delta:
        return Delta(max(0.0, self.clock() - start) * self.watts_per_core)
