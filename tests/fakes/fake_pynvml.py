"""A stand-in for the ``pynvml`` module, behaving like NVML on real GPUs.

- ``nvmlDeviceGetTotalEnergyConsumption`` returns millijoules since the fake started,
  integrated exactly from each device's :class:`~tests.fakes.traces.SineTrace`, but
  refreshed only every ``update_period_s`` (100 ms, as on Volta and newer);
- a pre-Volta device raises ``NVMLError_NotSupported`` there (and for MIG and process
  utilisation queries) and reports only power, in mW, refreshed at the same period;
- a device can be in MIG mode; process utilisation samples come from a fixed
  ``{pid: sm_util}`` table, one sample per process every update period;
- power limits are in milliwatts, within ``nvmlDeviceGetPowerManagementLimitConstraints``;
  setting one needs root (``privileged``), else ``NVMLError_NoPermission``, and a value
  out of range raises ``NVMLError_InvalidArgument``, as on real GPUs. With a
  ``state_dir`` the limit is device state shared by every process using the fake (one
  file per GPU, plus a log of every set call), as a real driver's is.

Exceptions and constants are the real pynvml's, so code catches the same classes.
Install it with ``monkeypatch.setitem(sys.modules, "pynvml", fake)`` or pass it as
``nvml_module``.
"""

from __future__ import annotations

import math
import os
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
    limit_range_mw: tuple[int, int] = (100_000, 400_000)  # min, max settable power limit
    default_limit_mw: int = 400_000
    calls: dict[str, int] = field(default_factory=dict)
    limit_mw: int | None = None  # current limit when no state_dir; None: the default


NODE_GPUS = (("GPU-aaaa", 100.0), ("GPU-bbbb", 300.0))  # (uuid, mean watts), in NVML index order


def node_fleet(state_dir: str | os.PathLike[str]) -> FakeNvml:
    """The two fake GPUs of a test Ray node (``tests/fakes/nvml_node``); limits kept in ``state_dir``."""
    gpus = [FakeGpu(f"Fake GPU {uuid[4:]}", uuid, SineTrace(watts, 0.1 * watts, 2.0)) for uuid, watts in NODE_GPUS]
    return FakeNvml(gpus, state_dir=state_dir)


class FakeNvml(types.ModuleType):
    """``pynvml`` with fake devices. ``init_error`` makes ``nvmlInit`` fail with that code."""

    def __init__(
        self,
        devices: list[FakeGpu],
        init_error: int | None = None,
        update_period_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        privileged: bool = True,
        state_dir: str | os.PathLike[str] | None = None,
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
        self.privileged = privileged
        self.state_dir = Path(state_dir) if state_dir is not None else None

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

    # -------------------------------------------------------------- power limits

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: FakeGpu) -> list[int]:
        device = self._device(handle, "limit_constraints")
        return list(device.limit_range_mw)

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: FakeGpu) -> int:
        return self._device(handle, "default_limit").default_limit_mw

    def nvmlDeviceGetPowerManagementLimit(self, handle: FakeGpu) -> int:
        device = self._device(handle, "get_limit")
        if self.state_dir is not None:
            path = self.state_dir / f"{device.uuid}.limit"
            return int(path.read_text()) if path.exists() else device.default_limit_mw
        return device.default_limit_mw if device.limit_mw is None else device.limit_mw

    def nvmlDeviceSetPowerManagementLimit(self, handle: FakeGpu, limit: int) -> None:
        device = self._device(handle, "set_limit")
        if not self.privileged or (self.state_dir is not None and (self.state_dir / "unprivileged").exists()):
            raise real.NVMLError(real.NVML_ERROR_NO_PERMISSION)
        low, high = device.limit_range_mw
        if not low <= int(limit) <= high:
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        device.limit_mw = int(limit)
        if self.state_dir is not None:
            (self.state_dir / f"{device.uuid}.limit").write_text(str(int(limit)))
            with (self.state_dir / f"{device.uuid}.log").open("a") as log:
                log.write(f"{os.getpid()} {int(limit)}\n")

    def limit_log(self, uuid: str) -> list[tuple[int, int]]:
        """``(pid, mW)`` of every successful set call on GPU ``uuid`` (needs ``state_dir``)."""
        assert self.state_dir is not None
        path = self.state_dir / f"{uuid}.log"
        lines = path.read_text().split() if path.exists() else []
        return [(int(pid), int(mw)) for pid, mw in zip(lines[::2], lines[1::2], strict=True)]
