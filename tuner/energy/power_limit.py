"""The GPU power limit as a search parameter: ``gpu_power_limit_w`` in the search space.

Zeus showed that a lower power limit trades time for energy. NVML sets it per device
(``nvmlDeviceSetPowerManagementLimit``, in milliwatts, within
``nvmlDeviceGetPowerManagementLimitConstraints``); it needs root, and the limit is
device state that outlives the process, so every trial restores the limit it found,
even when its objective fails. A trial killed outright (SIGKILL, node lost) cannot
restore it: ``nvidia-smi -pl`` or a driver reload sets it back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from tuner.config import POWER_LIMIT_PARAM
from tuner.energy.nvml import GpuDevice, open_nvml, select_devices
from tuner.errors import PowerLimitError, SourceUnavailable

__all__ = ["POWER_LIMIT_PARAM", "PowerLimitError", "check_power_limit_access", "gpu_power_limit"]
logger = logging.getLogger("tuner")




@contextmanager
def gpu_power_limit(
    watts: float | None, gpu_ids: Sequence[str] | None, nvml_module: ModuleType | None = None
) -> Iterator[None]:
    """Hold the assigned GPUs at ``watts`` inside the block, then restore their limits.

    ``None`` does nothing. ``gpu_ids`` as for :func:`~tuner.energy.nvml.select_devices`.
    Raises :class:`PowerLimitError` before touching any GPU when one cannot take it.
    """
    if watts is None:
        yield
        return
    nvml, devices = _open_devices(gpu_ids, nvml_module)
    applied: list[tuple[GpuDevice, int]] = []
    try:
        milliwatts = round(float(watts) * 1000)
        for device in devices:
            _check_range(nvml, device, float(watts), float(watts))
        for device in devices:
            before = nvml.nvmlDeviceGetPowerManagementLimit(device.handle)
            _set_limit(nvml, device, milliwatts)
            applied.append((device, before))
        yield
    finally:
        for device, before in reversed(applied):
            try:
                nvml.nvmlDeviceSetPowerManagementLimit(device.handle, before)
            except nvml.NVMLError as exc:
                logger.error("could not restore GPU %s power limit to %g W: %s", device.label, before / 1000, exc)
        nvml.nvmlShutdown()


def check_power_limit_access(
    low_w: float, high_w: float, gpu_ids: Sequence[str] | None, nvml_module: ModuleType | None = None
) -> list[str]:
    """Fail now if ``[low_w, high_w]`` cannot be applied to these GPUs; their names if it can.

    Privileges are checked the only way NVML allows: by setting each GPU's current
    limit again, which changes nothing.
    """
    nvml, devices = _open_devices(gpu_ids, nvml_module)
    try:
        for device in devices:
            _check_range(nvml, device, low_w, high_w)
            _set_limit(nvml, device, nvml.nvmlDeviceGetPowerManagementLimit(device.handle))
        return [device.name for device in devices]
    finally:
        nvml.nvmlShutdown()


def _open_devices(gpu_ids: Sequence[str] | None, nvml_module: ModuleType | None) -> tuple[Any, list[GpuDevice]]:
    try:
        nvml = open_nvml(nvml_module)
    except SourceUnavailable as exc:
        raise PowerLimitError(f"{POWER_LIMIT_PARAM} needs NVML on the GPU nodes: {exc}") from None
    devices, skipped = select_devices(nvml, gpu_ids)
    if skipped or not devices:
        nvml.nvmlShutdown()
        why = "; ".join(skipped) or "no GPU assigned to this process"
        raise PowerLimitError(f"{POWER_LIMIT_PARAM} cannot be applied: {why}")
    return nvml, devices


def _check_range(nvml: Any, device: GpuDevice, low_w: float, high_w: float) -> None:
    try:
        min_mw, max_mw = nvml.nvmlDeviceGetPowerManagementLimitConstraints(device.handle)
    except nvml.NVMLError as exc:
        raise PowerLimitError(f"GPU {device.label} ({device.name}) has no settable power limit: {exc}") from None
    if low_w * 1000 < min_mw or high_w * 1000 > max_mw:
        asked = f"{low_w:g} W" if low_w == high_w else f"{low_w:g}-{high_w:g} W"
        raise PowerLimitError(
            f"{POWER_LIMIT_PARAM} {asked} is outside GPU {device.label} ({device.name})'s "
            f"range {min_mw / 1000:g}-{max_mw / 1000:g} W"
        )


def _set_limit(nvml: Any, device: GpuDevice, milliwatts: int) -> None:
    try:
        nvml.nvmlDeviceSetPowerManagementLimit(device.handle, int(milliwatts))
    except nvml.NVMLError as exc:
        if getattr(exc, "value", None) == nvml.NVML_ERROR_NO_PERMISSION:
            raise PowerLimitError(
                f"setting GPU power limits needs root (GPU {device.label}: {exc}); run the Ray nodes "
                f"as root, or remove {POWER_LIMIT_PARAM} from search_space"
            ) from None
        raise PowerLimitError(f"GPU {device.label} ({device.name}): setting the power limit failed: {exc}") from None


def check_on_cluster(low_w: float, high_w: float, gpus: float, timeout_s: float = 120.0) -> list[str]:
    """:func:`check_power_limit_access` on a GPU node of the connected Ray cluster, before any trial.

    The driver may sit on a CPU-only head, so the check runs as a Ray task holding the
    same GPUs a trial would. Raises :class:`PowerLimitError` with the node's reason.
    """
    import ray

    available = ray.cluster_resources().get("GPU", 0.0)
    if available < gpus:
        raise PowerLimitError(
            f"{POWER_LIMIT_PARAM} needs GPUs, but the Ray cluster has {available:g} GPU(s) and a trial "
            f"takes {gpus:g}; start the GPU nodes first (on KubeRay: minReplicas >= 1 in the GPU group)"
        )

    @ray.remote(num_cpus=0, num_gpus=gpus)
    def probe() -> list[str]:
        return check_power_limit_access(low_w, high_w, [str(g) for g in ray.get_gpu_ids()])

    ref = probe.remote()
    ready, _ = ray.wait([ref], timeout=timeout_s)
    if not ready:
        ray.cancel(ref, force=True)
        raise PowerLimitError(f"no node with {gpus:g} free GPU(s) ran the {POWER_LIMIT_PARAM} check in {timeout_s:g} s")
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, PowerLimitError):
            raise PowerLimitError(str(exc.cause)) from None
        raise
