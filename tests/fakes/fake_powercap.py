"""A fake ``/sys/class/powercap`` tree whose RAPL counters advance and wrap like the real ones.

A writer thread rewrites every zone's ``energy_uj`` each millisecond (RAPL's own
update period), atomically, with the exact energy of its trace modulo
``max_energy_range_uj``. ``deny_reads`` makes ``energy_uj`` unreadable the way Linux
5.10+ does for non-root users.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.traces import SineTrace

REAL_MAX_RANGE_UJ = 262143328850  # what Intel client and server parts report


@dataclass
class FakeZone:
    dirname: str  # e.g. intel-rapl:0, intel-rapl:0:2, intel-rapl-mmio:0
    name: str  # package-0, core, dram, ...
    trace: SineTrace
    max_range_uj: int = REAL_MAX_RANGE_UJ
    start_uj: int = 0


class FakePowercap:
    """The tree under ``root``; use as a context manager to run the counters."""

    def __init__(self, root: Path, zones: list[FakeZone], update_period_s: float = 0.001) -> None:
        self.root = Path(root)
        self.zones = zones
        self.update_period_s = update_period_s
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for zone in zones:
            path = self._path(zone)
            path.mkdir(parents=True, exist_ok=True)
            (path / "name").write_text(zone.name + "\n")
            (path / "max_energy_range_uj").write_text(f"{zone.max_range_uj}\n")
        self._write_all()

    def _path(self, zone: FakeZone) -> Path:
        parts = zone.dirname.split(":")
        if len(parts) == 3:  # subzone: lives inside its package, as in sysfs
            return self.root / ":".join(parts[:2]) / zone.dirname
        return self.root / zone.dirname

    def counter_uj(self, zone: FakeZone, t: float) -> int:
        return (zone.start_uj + int(zone.trace.joules(0.0, t) * 1e6)) % zone.max_range_uj

    def _write_all(self) -> None:
        t = time.monotonic() - self.started
        for zone in self.zones:
            target = self._path(zone) / "energy_uj"
            tmp = target.with_suffix(".tmp")
            tmp.write_text(f"{self.counter_uj(zone, t)}\n")
            os.replace(tmp, target)

    def _run(self) -> None:
        while not self._stop.wait(self.update_period_s):
            self._write_all()

    def __enter__(self) -> FakePowercap:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def deny_reads(self) -> None:
        for zone in self.zones:
            os.chmod(self._path(zone) / "energy_uj", 0)


def intel_two_socket(root: Path, package_w: float = 60.0, dram_w: float = 8.0, **zone_args: int) -> FakePowercap:
    """Two packages with core and DRAM subzones, a psys zone, and package-0's MMIO twin."""
    trace_p = SineTrace(package_w, package_w / 4, period=0.7)
    trace_d = SineTrace(dram_w, dram_w / 4, period=0.3)
    zones = [
        FakeZone("intel-rapl:0", "package-0", trace_p, **zone_args),
        FakeZone("intel-rapl:0:0", "core", SineTrace(package_w / 2)),
        FakeZone("intel-rapl:0:2", "dram", trace_d, **zone_args),
        FakeZone("intel-rapl:1", "package-1", trace_p, **zone_args),
        FakeZone("intel-rapl:1:0", "dram", trace_d, **zone_args),
        FakeZone("intel-rapl:2", "psys", SineTrace(3 * package_w)),
        FakeZone("intel-rapl-mmio:0", "package-0", trace_p),
    ]
    return FakePowercap(root, zones)


@contextmanager
def unprivileged():
    """Drop to user ``nobody`` for file access when running as root (root reads anything)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
