"""DRAM energy estimated from the memory a process tree holds, when RAPL has no DRAM zone.

Power = resident GB x ``watts_per_gb``, integrated over the sampling period. The default
0.375 W/GB is CodeCarbon's figure (3 W per 8 GB DIMM, from Micron/Crucial module
specifications). DRAM power depends more on traffic than on occupancy, so the band is
+/-100 %: this keeps DRAM from being a silent zero, not more. Shared pages are counted
once per process that maps them. Children started within the last second (the
process list is refreshed once a second) are picked up at the next refresh.
"""

from __future__ import annotations

import math
import os
import threading
import time

import psutil

from tuner.energy.counter import Delta, EnergyCounter

SOURCE = "dram-rss-estimate"
RELATIVE_UNCERTAINTY = 1.0
DEFAULT_WATTS_PER_GB = 0.375


TREE_REFRESH_S = 1.0  # listing children scans all of /proc (~1 ms): not every sample


def process_tree_rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process and its live children."""
    root = psutil.Process(pid or os.getpid())
    return _rss_bytes([root, *root.children(recursive=True)])


def _rss_bytes(processes: list[psutil.Process]) -> int:
    total = 0
    for proc in processes:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # exited since the tree was listed
    return total


class DramEstimateCounter(EnergyCounter):
    """Integrated resident GB x ``watts_per_gb``, sampled by :meth:`poll`."""

    component = "dram"
    source = SOURCE
    relative_uncertainty = RELATIVE_UNCERTAINTY
    needs_polling = True

    def __init__(self, watts_per_gb: float = DEFAULT_WATTS_PER_GB, pid: int | None = None) -> None:
        if watts_per_gb < 0:
            raise ValueError(f"dram_watts_per_gb must be >= 0, got {watts_per_gb}")
        self.watts_per_gb = watts_per_gb
        self._root = psutil.Process(pid or os.getpid())
        self._tree: list[psutil.Process] = []
        self._tree_listed = -math.inf
        self._lock = threading.Lock()
        self._joules = 0.0
        self._last = (time.monotonic(), self._watts())

    def _watts(self) -> float:
        now = time.monotonic()
        if now - self._tree_listed >= TREE_REFRESH_S:
            self._tree = [self._root, *self._root.children(recursive=True)]
            self._tree_listed = now
        return _rss_bytes(self._tree) / 1e9 * self.watts_per_gb

    def poll(self) -> float:
        with self._lock:
            now, watts = time.monotonic(), self._watts()
            then, before = self._last
            self._joules += (now - then) * (watts + before) / 2
            self._last = (now, watts)
            return self._joules

    def snapshot(self) -> float:
        return self.poll()

    def since(self, start: float) -> Delta:
        return Delta(self.poll() - start)
