"""GPU energy through NVML, against a fake pynvml driven by known power traces.

Tolerance: the energy counter refreshes every 100 ms, so a window's reading can be off
by up to one refresh period at each end: 2 x 0.1 s x peak watts. Sampled power is
refreshed at the same period and integrated by the trapezoid rule: the same bound, plus
5 % for integration.
"""

from __future__ import annotations

import os
import sys
import time

import pynvml
import pytest

from tests.fakes.fake_pynvml import FakeGpu, FakeNvml
from tests.fakes.traces import SineTrace
from tuner.config import EnergySettings
from tuner.energy import J_PER_KWH, make_meter
from tuner.energy.nvml import NvmlCounter, open_nvml, select_devices
from tuner.errors import SourceUnavailable

VOLTA = SineTrace(200.0, 60.0, period=0.9)
PASCAL = SineTrace(120.0, 30.0, period=1.3)
PERIOD = 0.1


def _fleet(**kwargs) -> FakeNvml:
    return FakeNvml([
        FakeGpu("Tesla V100-SXM2-16GB", "GPU-aaaa", VOLTA, **kwargs),
        FakeGpu("Tesla P100-PCIE-16GB", "GPU-bbbb", PASCAL, energy_counter=False),
        FakeGpu("NVIDIA A100-SXM4-40GB", "GPU-cccc", VOLTA, mig=True),
        FakeGpu("NVIDIA A100-SXM4-80GB", "GPU-dddd", SineTrace(300.0, 20.0, period=0.5)),
    ])


def _gpu_joules(fake: FakeNvml, gpu_ids, seconds: float = 0.8, **meter_args):
    meter = make_meter(EnergySettings(sample_interval_s=0.02), gpu_ids=gpu_ids, nvml_module=fake, **meter_args)
    t0 = fake.elapsed()
    meter.begin_window("w")
    time.sleep(seconds)
    measured = meter.end_window("w")
    t1 = fake.elapsed()
    meter.close()
    return measured, t0, t1


def test_volta_counter_deltas_match_the_trace():
    fake = _fleet()
    measured, t0, t1 = _gpu_joules(fake, ["0"])
    gpu = measured.component("gpu")
    assert gpu.source == "nvml-energy-counter"
    assert gpu.relative_uncertainty == 0.05
    assert gpu.flags == ()
    expected = VOLTA.joules(t0, t1)
    assert gpu.energy_kwh * J_PER_KWH == pytest.approx(expected, abs=2 * PERIOD * VOLTA.peak)
    assert fake.devices[0].calls["energy"] >= 2
    assert measured.as_record()["hw_gpu_names"] == "Tesla V100-SXM2-16GB"


def test_pre_volta_falls_back_to_sampled_power():
    fake = _fleet()
    measured, t0, t1 = _gpu_joules(fake, ["1"])
    gpu = measured.component("gpu")
    assert gpu.source == "nvml-power-sampled"
    assert any("has no energy counter; power sampled" in r for r in gpu.reasons)
    expected = PASCAL.joules(t0, t1)
    assert gpu.energy_kwh * J_PER_KWH == pytest.approx(expected, abs=2 * PERIOD * PASCAL.peak + 0.05 * expected)
    assert fake.devices[1].calls["power"] > 10  # sampled in the background, not just at the ends


def test_several_devices_by_index_and_uuid_are_summed():
    fake = _fleet()
    by_index, t0, t1 = _gpu_joules(fake, ["0", "3"])
    expected = VOLTA.joules(t0, t1) + fake.devices[3].trace.joules(t0, t1)
    tolerance = 2 * PERIOD * (VOLTA.peak + fake.devices[3].trace.peak)
    assert by_index.component("gpu").energy_kwh * J_PER_KWH == pytest.approx(expected, abs=tolerance)
    assert by_index.hardware["hw_gpu_names"] == "Tesla V100-SXM2-16GB,NVIDIA A100-SXM4-80GB"
    by_uuid, t0, t1 = _gpu_joules(fake, ["GPU-aaaa", "GPU-dddd"], seconds=0.4)
    expected = VOLTA.joules(t0, t1) + fake.devices[3].trace.joules(t0, t1)
    assert by_uuid.component("gpu").energy_kwh * J_PER_KWH == pytest.approx(expected, abs=tolerance)


def test_mixed_devices_report_the_weaker_source():
    measured, _, _ = _gpu_joules(_fleet(), ["0", "1"], seconds=0.3)
    assert measured.component("gpu").source == "nvml-power-sampled"


def test_cuda_visible_devices_selects_gpus(monkeypatch):
    fake = _fleet()
    fake.nvmlInit()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-dddd,1")
    devices, reasons = select_devices(fake, None)
    assert [d.label for d in devices] == ["GPU-dddd", "1"] and reasons == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert select_devices(fake, None) == ([], [])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    devices, reasons = select_devices(fake, None)
    assert [d.label for d in devices] == ["0", "1", "3"]  # all GPUs, the MIG one excluded
    assert "in MIG mode" in reasons[0]


def test_mig_instances_are_reported_not_measurable():
    fake = _fleet()
    measured, _, _ = _gpu_joules(fake, ["2", "MIG-1234-5678"], seconds=0.1)
    gpu = measured.component("gpu")
    assert gpu.energy_kwh is None and gpu.source == "absent"
    assert any("GPU 2 (NVIDIA A100-SXM4-40GB) is in MIG mode" in r for r in gpu.reasons)
    assert any("MIG-1234-5678 is a MIG instance" in r for r in gpu.reasons)
    record = measured.as_record()
    assert "energy_gpu_kwh" not in record  # never a silent zero
    assert "MIG" in record["energy_fallback_gpu"]


def test_window_shorter_than_update_period_is_not_zero_and_is_flagged():
    fake = _fleet()
    meter = make_meter(EnergySettings(), gpu_ids=["0"], nvml_module=fake)
    meter.begin_window("short")
    time.sleep(0.01)
    measured = meter.end_window("short")
    meter.close()
    gpu = measured.component("gpu")
    assert gpu.flags == ("short-window",)
    assert gpu.relative_uncertainty == 0.2
    # power x duration, power refreshed within the last 100 ms
    assert gpu.energy_kwh * J_PER_KWH == pytest.approx(VOLTA.mean * measured.duration_s, rel=0.5)
    assert "gpu:short-window" in measured.as_record()["energy_flags"]


def test_shared_gpu_is_split_by_process_utilisation():
    ours, other = os.getpid(), 999_999
    fake = _fleet(process_util={ours: 30, other: 90})
    measured, t0, t1 = _gpu_joules(fake, ["0"], gpu_shared=True)
    gpu = measured.component("gpu")
    assert gpu.flags == ()
    expected = 0.25 * VOLTA.joules(t0, t1)
    assert gpu.energy_kwh * J_PER_KWH == pytest.approx(expected, abs=0.25 * 2 * PERIOD * VOLTA.peak)


def test_shared_gpu_without_process_utilisation_is_tagged_shared_device():
    fake = _fleet()  # process utilisation not supported
    measured, t0, t1 = _gpu_joules(fake, ["0"], seconds=0.4, gpu_shared=True)
    gpu = measured.component("gpu")
    assert gpu.flags == ("shared-device",)
    assert gpu.energy_kwh * J_PER_KWH == pytest.approx(VOLTA.joules(t0, t1), abs=2 * PERIOD * VOLTA.peak)


def test_no_driver_means_absent_with_the_reason():
    broken = FakeNvml([], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    with pytest.raises(SourceUnavailable, match="NVML unavailable: Driver Not Loaded"):
        open_nvml(broken)
    meter = make_meter(nvml_module=broken)
    meter.begin_window("w")
    gpu = meter.end_window("w").component("gpu")
    assert gpu.energy_kwh is None
    assert gpu.reasons == ("NVML unavailable: Driver Not Loaded",)


def test_this_machine_has_no_nvml():
    with pytest.raises(SourceUnavailable, match="NVML unavailable"):
        open_nvml()


def test_fake_injected_through_sys_modules_is_used(monkeypatch):
    fake = _fleet()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    meter = make_meter()
    assert isinstance(meter.counters["gpu"], NvmlCounter)
    meter.close()
    assert fake.initialised == 0  # shut down again


def test_gpu_lost_mid_window_is_absent_with_the_reason():
    fake = _fleet()
    meter = make_meter(EnergySettings(), gpu_ids=["0"], nvml_module=fake)
    meter.begin_window("w")
    fake.devices[0].energy_counter = False  # the next energy query fails
    fake.nvmlDeviceGetTotalEnergyConsumption = _raise_gpu_lost
    measured = meter.end_window("w")
    meter.close()
    gpu = measured.component("gpu")
    assert gpu.energy_kwh is None
    assert gpu.reasons[-1] == "nvml-energy-counter read failed: NVMLError_GpuIsLost: GPU is lost"
    assert measured.component("cpu").present  # the rest of the trial's energy survives


def _raise_gpu_lost(handle):
    raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)


def test_hardware_tags_say_none_only_when_nvml_answered():
    meter = make_meter(gpu_ids=["MIG-1"], nvml_module=_fleet())
    assert meter.hardware["hw_gpu_names"] == "none"
    broken = FakeNvml([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    assert make_meter(nvml_module=broken).hardware["hw_gpu_names"] == "unknown"
