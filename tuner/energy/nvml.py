"""GPU energy through NVML (the ``pynvml`` module of nvidia-ml-py).

Volta and newer keep a total-energy counter in millijoules
(``nvmlDeviceGetTotalEnergyConsumption``); windows take deltas of it. Older GPUs raise
``NVMLError_NotSupported`` there, so their power (``nvmlDeviceGetPowerUsage``, mW) is
sampled in the chain meter's sampler thread and integrated (trapezoid rule).

The counter refreshes about every 100 ms (:data:`UPDATE_PERIOD_S`), so a shorter window
can read zero: such windows are measured as power x duration instead and flagged
``short-window``. MIG instances cannot be measured: NVML reports energy for the whole
physical GPU only, so they are listed with that reason and left out.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from tuner.energy.counter import Delta, EnergyCounter
from tuner.errors import SourceUnavailable

COUNTER_SOURCE = "nvml-energy-counter"
SAMPLED_SOURCE = "nvml-power-sampled"
UPDATE_PERIOD_S = 0.1
# NVML documents board power as accurate to +/-5 % (nvmlDeviceGetPowerUsage). Sampled
# power adds integration error between samples (+5 %); a short window measured as one
# power reading x duration is trusted to +/-20 %.
COUNTER_UNCERTAINTY = 0.05
SAMPLED_UNCERTAINTY = 0.10
SHORT_WINDOW_UNCERTAINTY = 0.20


def open_nvml(module: ModuleType | None = None) -> ModuleType:
    """Initialised ``pynvml`` (or the given stand-in); :class:`SourceUnavailable` if not."""
    if module is None:
        try:
            import pynvml as module  # type: ignore[no-redef]
        except ImportError:
            raise SourceUnavailable("NVML unavailable: pynvml not installed (pip install nvidia-ml-py)") from None
    try:
        module.nvmlInit()
    except module.NVMLError as exc:
        raise SourceUnavailable(f"NVML unavailable: {exc}") from None
    return module


@dataclass
class GpuDevice:
    """One physical GPU this process may use, and its integration state."""

    label: str
    handle: Any
    name: str
    has_counter: bool = True
    power_joules: float = 0.0
    last_sample: tuple[float, float] | None = None  # (monotonic time, watts)
    util_ours: float = 0.0
    util_all: float = 0.0
    util_timestamp: int = 0
    util_supported: bool = True
    notes: list[str] = field(default_factory=list)


def select_devices(nvml: ModuleType, gpu_ids: Sequence[str] | None = None) -> tuple[list[GpuDevice], list[str]]:
    """The GPUs assigned to this process, and reasons for any that cannot be measured.

    ``gpu_ids`` are indices or UUIDs (``GPU-...``, ``MIG-...``), as Ray's
    ``get_gpu_ids()`` or ``CUDA_VISIBLE_DEVICES`` give them; ``None`` reads
    ``CUDA_VISIBLE_DEVICES``, and all GPUs are used when it is unset.
    """
    if gpu_ids is None:
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        if env is None:
            gpu_ids = [str(i) for i in range(nvml.nvmlDeviceGetCount())]
        else:
            gpu_ids = [part.strip() for part in env.split(",") if part.strip()]
    devices: list[GpuDevice] = []
    reasons: list[str] = []
    for gpu_id in (str(g) for g in gpu_ids):
        if gpu_id.startswith("MIG-"):
            reasons.append(f"{gpu_id} is a MIG instance: NVML measures only the whole GPU, not one instance")
            continue
        try:
            if gpu_id.isdigit():
                handle = nvml.nvmlDeviceGetHandleByIndex(int(gpu_id))
            else:
                handle = nvml.nvmlDeviceGetHandleByUUID(gpu_id)
        except nvml.NVMLError as exc:
            reasons.append(f"GPU {gpu_id}: {exc}")
            continue
        name = _text(nvml.nvmlDeviceGetName(handle))
        if _mig_enabled(nvml, handle):
            reasons.append(
                f"GPU {gpu_id} ({name}) is in MIG mode: NVML measures only the whole GPU, not one instance"
            )
            continue
        devices.append(GpuDevice(label=gpu_id, handle=handle, name=name))
    return devices, reasons


def _mig_enabled(nvml: ModuleType, handle: Any) -> bool:
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError:
        return False  # pre-Ampere, or MIG not supported: not in MIG mode
    return current == nvml.NVML_DEVICE_MIG_ENABLE


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlCounter(EnergyCounter):
    """Energy of the selected GPUs: counter deltas where supported, sampled power elsewhere.

    With ``shared=True`` (fractional GPU resources) each device's energy is split by
    this process tree's share of the SM utilisation NVML reports per process; where
    NVML does not report it the whole device's energy is kept and flagged
    ``shared-device``.
    """

    component = "gpu"
    package_level = False

    def __init__(
        self,
        nvml: ModuleType,
        devices: list[GpuDevice],
        shared: bool = False,
        our_pids: Callable[[], set[int]] | None = None,
    ) -> None:
        if not devices:
            raise ValueError("NvmlCounter needs at least one device")
        self.nvml = nvml
        self.devices = devices
        self.shared = shared
        self._our_pids = our_pids or _process_tree_pids
        self._lock = threading.Lock()
        for device in devices:
            try:
                nvml.nvmlDeviceGetTotalEnergyConsumption(device.handle)
            except nvml.NVMLError_NotSupported:
                device.has_counter = False
                device.notes.append(f"GPU {device.label} ({device.name}) has no energy counter; power sampled")
        sampled = any(not d.has_counter for d in devices)
        self.source = SAMPLED_SOURCE if sampled else COUNTER_SOURCE
        self.relative_uncertainty = SAMPLED_UNCERTAINTY if sampled else COUNTER_UNCERTAINTY
        self.needs_polling = sampled or shared
        self.poll()

    @property
    def notes(self) -> list[str]:
        return [note for d in self.devices for note in d.notes]

    def _watts(self, device: GpuDevice) -> float:
        return self.nvml.nvmlDeviceGetPowerUsage(device.handle) / 1000.0

    def poll(self) -> None:
        with self._lock:
            now = time.monotonic()
            pids = self._our_pids() if self.shared else set()
            for device in self.devices:
                if not device.has_counter:
                    watts = self._watts(device)
                    if device.last_sample is not None:
                        then, before = device.last_sample
                        device.power_joules += (now - then) * (watts + before) / 2
                    device.last_sample = (now, watts)
                if self.shared and device.util_supported:
                    self._sample_utilisation(device, pids)

    def _sample_utilisation(self, device: GpuDevice, pids: set[int]) -> None:
        nvml = self.nvml
        try:
            samples = nvml.nvmlDeviceGetProcessUtilization(device.handle, device.util_timestamp)
        except nvml.NVMLError_NotSupported:
            device.util_supported = False
            return
        except nvml.NVMLError_NotFound:
            return  # no process sampled since the last call
        for sample in samples:
            device.util_all += sample.smUtil
            if sample.pid in pids:
                device.util_ours += sample.smUtil
            device.util_timestamp = max(device.util_timestamp, int(sample.timeStamp))

    def _device_joules(self, device: GpuDevice) -> float:
        if device.has_counter:
            return self.nvml.nvmlDeviceGetTotalEnergyConsumption(device.handle) / 1000.0
        return device.power_joules

    def snapshot(self) -> tuple[float, list[tuple[float, float, float]]]:
        self.poll()
        return time.monotonic(), [(self._device_joules(d), d.util_ours, d.util_all) for d in self.devices]

    def since(self, start: tuple[float, list[tuple[float, float, float]]]) -> Delta:
        self.poll()
        started, before = start
        duration = time.monotonic() - started
        total, flags, uncertainty = 0.0, set(), None
        for device, (joules0, ours0, all0) in zip(self.devices, before, strict=True):
            joules = self._device_joules(device) - joules0
            if device.has_counter and duration > 0 and (duration < UPDATE_PERIOD_S or joules <= 0):
                # The counter may not have ticked yet: power x time is the honest figure.
                joules = self._watts(device) * duration
                flags.add("short-window")
                uncertainty = SHORT_WINDOW_UNCERTAINTY
            if self.shared:
                util_all = device.util_all - all0
                if device.util_supported and util_all > 0:
                    joules *= (device.util_ours - ours0) / util_all
                else:
                    flags.add("shared-device")
            total += joules
        return Delta(total, tuple(sorted(flags)), uncertainty)

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass


def _process_tree_pids() -> set[int]:
    import psutil

    root = psutil.Process()
    return {root.pid, *(child.pid for child in root.children(recursive=True))}
