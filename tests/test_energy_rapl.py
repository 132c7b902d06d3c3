"""CPU package and DRAM energy from RAPL, against a fake powercap tree with known traces.

Tolerance: the fake refreshes counters every 1 ms like RAPL, but its writer thread can
lag by tens of milliseconds on a loaded machine, and the test's clock readings bracket
the meter's: 20 ms x peak watts per zone at each end of a window.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.fakes.fake_powercap import FakePowercap, FakeZone, intel_two_socket, unprivileged
from tests.fakes.traces import SineTrace
from tuner.config import EnergySettings
from tuner.energy import J_PER_KWH, make_meter
from tuner.energy.rapl import RaplCounter, discover_zones
from tuner.errors import SourceUnavailable

SLACK_S = 0.02


def test_packages_and_dram_are_found_once_each(tmp_path):
    intel_two_socket(tmp_path)
    zones = discover_zones(tmp_path)
    assert [z.path.name for z in zones["cpu"]] == ["intel-rapl:0", "intel-rapl:1"]  # not the MMIO twin, not psys
    assert [z.path.name for z in zones["dram"]] == ["intel-rapl:0:2", "intel-rapl:1:0"]  # not 'core'


def test_amd_package_without_dram_zone(tmp_path):
    FakePowercap(tmp_path, [FakeZone("intel-rapl:0", "package-0", SineTrace(90.0))])
    meter = make_meter(rapl_root=tmp_path, attribute=False)
    meter.begin_window("w")
    measured = meter.end_window("w")
    assert measured.component("cpu").source == "rapl"
    dram = measured.component("dram")
    assert dram.source == "dram-rss-estimate"
    assert any("RAPL has no DRAM zone" in r for r in dram.reasons)
    assert measured.source == "dram-rss-estimate"  # the total contains an estimate, and says so


def test_whole_machine_energy_matches_the_traces(tmp_path):
    with intel_two_socket(tmp_path, package_w=60.0, dram_w=8.0) as fake:
        meter = make_meter(EnergySettings(), rapl_root=tmp_path, attribute=False)
        t0 = fake.elapsed()
        meter.begin_window("w")
        time.sleep(0.6)
        measured = meter.end_window("w")
        t1 = fake.elapsed()
    package, dram = fake.zones[0].trace, fake.zones[2].trace
    cpu, mem = measured.component("cpu"), measured.component("dram")
    assert (cpu.source, cpu.relative_uncertainty) == ("rapl", 0.1)
    assert (mem.source, mem.relative_uncertainty) == ("rapl", 0.2)
    assert cpu.energy_kwh * J_PER_KWH == pytest.approx(2 * package.joules(t0, t1), abs=2 * SLACK_S * package.peak * 2)
    assert mem.energy_kwh * J_PER_KWH == pytest.approx(2 * dram.joules(t0, t1), abs=2 * SLACK_S * dram.peak * 2)
    assert measured.source == "rapl"


def test_counter_wraparound_is_unwrapped(tmp_path):
    trace = SineTrace(40.0, 10.0, period=0.5)
    # 20 J range at ~40 W wraps about twice a second; start just below the top.
    zone = FakeZone("intel-rapl:0", "package-0", trace, max_range_uj=20_000_000, start_uj=19_500_000)
    with FakePowercap(tmp_path, [zone]) as fake:
        counter = RaplCounter("cpu", discover_zones(tmp_path)["cpu"])
        t0 = fake.elapsed()
        start = counter.snapshot()
        wraps_seen = 0
        last = int((tmp_path / "intel-rapl:0" / "energy_uj").read_text())
        for _ in range(12):  # poll like the sampler does, every 100 ms
            time.sleep(0.1)
            counter.poll()
            now = int((tmp_path / "intel-rapl:0" / "energy_uj").read_text())
            wraps_seen += now < last
            last = now
        joules = counter.since(start).joules
        t1 = fake.elapsed()
    assert wraps_seen >= 2
    assert joules == pytest.approx(trace.joules(t0, t1), abs=2 * SLACK_S * trace.peak)


def test_absent_tree_falls_back_with_reason(tmp_path):
    with pytest.raises(SourceUnavailable, match="RAPL absent: .* does not exist"):
        discover_zones(tmp_path / "missing")
    with pytest.raises(SourceUnavailable, match="RAPL absent: no package zones"):
        discover_zones(tmp_path)


def test_permission_denied_falls_back_with_the_fix():
    root = Path(tempfile.mkdtemp(prefix="powercap-"))  # world-traversable, unlike tmp_path
    try:
        root.chmod(0o755)
        intel_two_socket(root).deny_reads()
        with unprivileged():
            meter = make_meter(rapl_root=root)
        cpu = meter.counters["cpu"]
        assert cpu.source == "cpu-time-estimate"
        reason = meter.reasons["cpu"][0]
        assert reason.startswith(f"RAPL unreadable: permission denied on {root}/intel-rapl:0/energy_uj")
        assert "chmod" in reason
        assert meter.reasons["dram"][0] == reason
    finally:
        shutil.rmtree(root)


@pytest.mark.skipif(Path("/sys/class/powercap").exists(), reason="this machine has a powercap tree")
def test_this_machine_has_no_rapl():
    meter = make_meter()
    assert meter.reasons["cpu"][0] == "RAPL absent: /sys/class/powercap does not exist"
    assert meter.counters["cpu"].source == "cpu-time-estimate"
