"""The CPU-time meter: energy follows CPU seconds, children count, and it says it's an estimate."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import tuner
from tuner.energy import J_PER_KWH, CpuTimeMeter, Measurement


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(i * i for i in range(1000))


def test_energy_is_cpu_seconds_times_watts_per_core():
    meter = CpuTimeMeter(watts_per_core=20.0)
    meter.begin_window("w")
    _burn(0.5)
    m = meter.end_window("w")
    assert m.source == "cpu-time-estimate"
    assert m.relative_uncertainty == 0.5
    assert m.cpu_time_s == pytest.approx(0.5, abs=0.15)
    assert m.energy_kwh == pytest.approx(m.cpu_time_s * 20.0 / J_PER_KWH)
    assert m.avg_power_w == pytest.approx(m.energy_kwh * J_PER_KWH / m.duration_s)


def test_sleeping_costs_almost_nothing():
    meter = CpuTimeMeter(watts_per_core=10.0)
    meter.begin_window("idle")
    time.sleep(0.5)
    m = meter.end_window("idle")
    assert m.duration_s >= 0.5
    assert m.cpu_time_s < 0.1


def test_child_processes_are_counted():
    meter = CpuTimeMeter(watts_per_core=10.0)
    meter.begin_window("kids")
    code = "import time\nend=time.process_time()+0.6\nwhile time.process_time()<end: sum(range(1000))"
    subprocess.run([sys.executable, "-c", code], check=True)
    m = meter.end_window("kids")
    assert m.cpu_time_s >= 0.5


def test_windows_are_read_while_open_and_closed_once():
    meter = CpuTimeMeter(watts_per_core=10.0)
    meter.begin_window("w")
    _burn(0.2)
    first = meter.read_window("w")
    _burn(0.2)
    second = meter.read_window("w")
    assert second.energy_kwh > first.energy_kwh > 0
    meter.end_window("w")
    with pytest.raises(ValueError, match="not open"):
        meter.end_window("w")
    meter.begin_window("a")
    with pytest.raises(ValueError, match="already open"):
        meter.begin_window("a")


def test_invalid_watts_rejected():
    with pytest.raises(ValueError, match="watts_per_core"):
        CpuTimeMeter(0)


def test_measure_context_manager_fills_measurement():
    with tuner.measure("block") as block:
        _burn(0.3)
    assert isinstance(block.measurement, Measurement)
    assert block.measurement.energy_kwh > 0
    assert block.measurement.source == "cpu-time-estimate"


def test_report_outside_a_trial_is_a_no_op():
    assert tuner.report(accuracy=0.5) is None
