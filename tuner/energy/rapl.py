"""CPU package and DRAM energy from RAPL through the Linux powercap sysfs tree.

Zones live under ``/sys/class/powercap`` as ``intel-rapl:N`` (package N, on Intel and,
since Linux 5.8, on AMD Zen too), their subzones ``intel-rapl:N:M`` (``core``,
``uncore``, ``dram``), and ``intel-rapl-mmio:N``, a second interface to the same
package on recent Intel parts. Only top-level ``package-*`` zones and ``dram`` subzones
are summed, each package once (the MSR zone wins over its MMIO twin), so nothing is
counted twice: ``core``/``uncore`` are inside the package, ``psys`` contains it.

``energy_uj`` wraps at ``max_energy_range_uj``; the counter is polled every sampling
period, far more often than the fastest wrap (minutes at hundreds of watts).
Since Linux 5.10 ``energy_uj`` is readable by root only (CVE-2020-8694).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from tuner.energy.counter import Delta, EnergyCounter
from tuner.errors import SourceUnavailable

DEFAULT_ROOT = Path("/sys/class/powercap")
SOURCE = "rapl"
# RAPL package energy tracks plug-level power within a few percent on Intel since Haswell
# (Khan et al., "RAPL in Action", ACM TOMPACS 2018); +/-10 % also covers AMD's coarser
# model. DRAM RAPL is less validated (Desrochers et al., MEMSYS 2016: within ~5-20 %).
PACKAGE_UNCERTAINTY = 0.10
DRAM_UNCERTAINTY = 0.20


@dataclass(frozen=True)
class RaplZone:
    path: Path
    name: str
    max_range_uj: int


def discover_zones(root: Path = DEFAULT_ROOT) -> dict[str, list[RaplZone]]:
    """Package and DRAM zones under ``root``, each counted once, checked readable.

    Raises :class:`SourceUnavailable` with the reason (absent, no zones, unreadable).
    """
    root = Path(root)
    if not root.is_dir():
        raise SourceUnavailable(f"RAPL absent: {root} does not exist")
    packages: dict[str, RaplZone] = {}
    drams: dict[str, RaplZone] = {}
    tops = sorted(root.glob("intel-rapl:*"), key=_zone_order) + sorted(root.glob("intel-rapl-mmio:*"), key=_zone_order)
    for top in tops:
        if top.name.count(":") != 1:
            continue  # subzones are visited through their package
        zone = _read_zone(top)
        if zone.name.startswith("package"):
            packages.setdefault(zone.name, zone)  # MSR first, so its MMIO twin is skipped
            for sub in sorted(top.glob(f"{top.name}:*"), key=_zone_order):
                subzone = _read_zone(sub)
                if subzone.name == "dram":
                    drams.setdefault(zone.name, subzone)
        elif zone.name == "dram":  # some servers expose DRAM as a top-level zone
            drams.setdefault(top.name, zone)
    if not packages:
        raise SourceUnavailable(f"RAPL absent: no package zones under {root}")
    return {"cpu": list(packages.values()), "dram": list(drams.values())}


def _zone_order(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in path.name.split(":")[1:] if p.isdigit())


def _read_zone(path: Path) -> RaplZone:
    try:
        name = (path / "name").read_text().strip()
        max_range = int((path / "max_energy_range_uj").read_text())
        int((path / "energy_uj").read_text())
    except PermissionError:
        raise SourceUnavailable(
            f"RAPL unreadable: permission denied on {path / 'energy_uj'}; run "
            f"'sudo chmod o+r {path.parent}/intel-rapl*/energy_uj {path.parent}/intel-rapl*/*/energy_uj' "
            "(root-only since Linux 5.10) or run as root"
        ) from None
    except (OSError, ValueError) as exc:
        raise SourceUnavailable(f"RAPL unreadable: {path}: {exc}") from None
    return RaplZone(path, name, max_range)


class RaplCounter(EnergyCounter):
    """Summed energy of some RAPL zones, unwrapped into a monotonic joule count."""

    source = SOURCE
    package_level = True
    needs_polling = True  # to catch wraparound between window reads

    def __init__(self, component: str, zones: list[RaplZone]) -> None:
        if not zones:
            raise ValueError("RaplCounter needs at least one zone")
        self.component = component
        self.relative_uncertainty = DRAM_UNCERTAINTY if component == "dram" else PACKAGE_UNCERTAINTY
        self.zones = zones
        self._lock = threading.Lock()
        self._last = [self._raw(z) for z in zones]
        self._total_uj = 0

    def _raw(self, zone: RaplZone) -> int:
        return int((zone.path / "energy_uj").read_text())

    def _update(self) -> float:
        with self._lock:
            for i, zone in enumerate(self.zones):
                raw = self._raw(zone)
                step = raw - self._last[i]
                if step < 0:  # wrapped past max_energy_range_uj
                    step += zone.max_range_uj
                self._total_uj += step
                self._last[i] = raw
            return self._total_uj / 1e6

    def poll(self) -> None:
        self._update()

    def snapshot(self) -> float:
        return self._update()

    def since(self, start: float) -> Delta:
        return Delta(self._update() - start)
