"""A stand-in for the ``pynvml`` module, behaving like NVML on real GPUs.

- ``nvmlDeviceGetTotalEnergyConsumption`` returns millijoules since the fake started,
  integrated exactly from each device's :class:`~tests.fakes.traces.SineTrace`, but
  refreshed only every ``update_period_s`` (100 ms, as on Volta and newer);
- a pre-Volta device raises ``NVMLError_NotSupported`` there (and for MIG and process
  utilisation queries) and reports only power, in mW, refreshed at the same period;
- a device can be in MIG mode; process utilisation samples come from a fixed
  ``{pid: sm_util}`` table, one sample per process every update period.

Exceptions and constants are the real pynvml's, so code catches the same classes.
Install it with ``monkeypatch.setitem(sys.modules, "pynvml", fake)`` or pass it as
``nvml_module``.
"""

from __future__ import annotations

import math
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field

import pynvml as real

from tests.fakes.traces import SineTrace


@dataclass
class FakeGpu:
    name: str
    uuid: str
    trace: SineTrace
    energy_counter: bool = True  # False: pre-Volta
    mig: bool = False
    process_util: dict[int, int] | None = None  # pid -> SM %; None: not supported
    calls: dict[str, int] = field(default_factory=dict)


class FakeNvml(types.ModuleType):
    """``pynvml`` with fake devices. ``init_error`` makes ``nvmlInit`` fail with that code."""

    def __init__(
        self,
        devices: list[FakeGpu],
        init_error: int | None = None,
        update_period_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("pynvml")
        for name in dir(real):
            if name.startswith(("NVMLError", "NVML_")):
                setattr(self, name, getattr(real, name))
        self.devices = devices
        self.init_error = init_error
        self.update_period_s = update_period_s
        self.clock = clock
        self.started = clock()
        self.initialised = 0

    # ------------------------------------------------------------------ helpers

    def elapsed(self) -> float:
        return self.clock() - self.started

    def last_tick(self) -> float:
        """Time of the latest counter refresh, in seconds since the fake started."""
        return math.floor(self.elapsed() / self.update_period_s) * self.update_period_s

    def _device(self, handle: FakeGpu, call: str) -> FakeGpu:
        if not self.initialised:
            raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)
        handle.calls[call] = handle.calls.get(call, 0) + 1
        return handle

    # ------------------------------------------------------------------ NVML API

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise real.NVMLError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        if not self.initialised:
            raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        if not self.initialised:
            raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        if not self.initialised:
            raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)
        if not 0 <= index < len(self.devices):
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        return self.devices[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu:
        if not self.initialised:
            raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)
        for device in self.devices:
            if device.uuid == uuid:
                return device
        raise real.NVMLError(real.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
        return self._device(handle, "name").name

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:
        return self._device(handle, "uuid").uuid

    def nvmlDeviceGetMigMode(self, handle: FakeGpu) -> list[int]:
        device = self._device(handle, "mig")
        if not device.energy_counter:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)  # pre-Ampere
        mode = real.NVML_DEVICE_MIG_ENABLE if device.mig else real.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu) -> int:
        device = self._device(handle, "energy")
        if not device.energy_counter:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        return int(device.trace.joules(0.0, self.last_tick()) * 1000)

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        device = self._device(handle, "power")
        return int(device.trace.watts(self.last_tick()) * 1000)

    def nvmlDeviceGetProcessUtilization(self, handle: FakeGpu, timeStamp: int) -> list:
        device = self._device(handle, "process_util")
        if device.process_util is None:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        period_us = int(self.update_period_s * 1e6)
        now_us = int(self.last_tick() * 1e6)
        first = max(timeStamp + 1, now_us - 10 * period_us)  # NVML keeps a short buffer
        ticks = [t for t in range(first - first % period_us, now_us + 1, period_us) if t > timeStamp]
        if not ticks:
            raise real.NVMLError(real.NVML_ERROR_NOT_FOUND)
        samples = []
        for tick in ticks:
            for pid, sm in device.process_util.items():
                samples.append(real.c_nvmlProcessUtilizationSample_t(pid=pid, timeStamp=tick, smUtil=sm))
        return samples
