"""Build the fallback chain from the energy settings: ``make_meter(settings)``.

Per component, the first source that works here is used, and every one skipped leaves
its reason in the measurement (``energy_fallback_<component>``):

- cpu: user override -> RAPL package zones -> CPU time x watts per core (TDP table)
- dram: user override -> RAPL DRAM zones -> resident GB x watts per GB
- gpu: user override -> NVML on the assigned GPUs -> absent, with the reason
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from tuner.config import EnergySettings
from tuner.energy import nvml, rapl, tdp
from tuner.energy.counter import ConstantPowerCounter, EnergyCounter
from tuner.energy.cputime import CpuTimeCounter, TreeCpuClock
from tuner.energy.dram import DramEstimateCounter
from tuner.energy.meter import ChainMeter
from tuner.errors import SourceUnavailable


def make_meter(
    settings: EnergySettings | None = None,
    *,
    gpu_ids: Sequence[str] | None = None,
    gpu_shared: bool = False,
    rapl_root: Path | str = rapl.DEFAULT_ROOT,
    nvml_module: ModuleType | None = None,
    pid: int | None = None,
    attribute: bool | None = None,
) -> ChainMeter:
    """The best meter this machine allows, with the reason for every fallback.

    ``gpu_ids``: the GPUs assigned to the measured code (Ray's ``get_gpu_ids()``);
    ``None`` reads ``CUDA_VISIBLE_DEVICES``. ``gpu_shared``: the GPU is shared with other
    trials (fractional ``gpu`` resources). ``rapl_root`` and ``nvml_module`` point at
    the powercap tree and ``pynvml`` module to use (tests pass fakes).
    """
    settings = settings or EnergySettings()
    counters: list[EnergyCounter] = []
    reasons: dict[str, list[str]] = {"cpu": [], "dram": [], "gpu": []}
    model = tdp.cpu_model()
    hardware = {"hw_cpu_model": model, "hw_node": socket.gethostname()}

    overridden = set()
    for component, override in settings.overrides.items():
        uncertainty = math.nan if override.uncertainty is None else override.uncertainty
        counters.append(ConstantPowerCounter(component, override.watts, uncertainty))
        reasons[component].append(f"{override.watts:g} W given in energy.overrides.{component}")
        overridden.add(component)

    if not {"cpu", "dram"} <= overridden:
        _add_cpu_and_dram(settings, counters, reasons, overridden, Path(rapl_root), model, pid)
    if "gpu" not in overridden:
        gpu = _gpu_counter(nvml_module, gpu_ids, gpu_shared, reasons["gpu"])
        if gpu is not None:
            counters.append(gpu)
            hardware["hw_gpu_names"] = ",".join(d.name for d in gpu.devices)
            reasons["gpu"] += gpu.notes
        elif not any(r.startswith("NVML unavailable") for r in reasons["gpu"]):
            hardware["hw_gpu_names"] = "none"  # NVML answered: no measurable GPU here
    hardware.setdefault("hw_gpu_names", "unknown")

    return ChainMeter(
        counters,
        reasons=reasons,
        hardware=hardware,
        attribute=settings.attribute_by_cpu_share if attribute is None else attribute,
        idle_watts=settings.idle_watts,
        sample_interval_s=settings.sample_interval_s,
        pid=pid,
    )


def _add_cpu_and_dram(
    settings: EnergySettings,
    counters: list[EnergyCounter],
    reasons: dict[str, list[str]],
    overridden: set[str],
    rapl_root: Path,
    model: str,
    pid: int | None,
) -> None:
    try:
        zones = rapl.discover_zones(rapl_root)
    except SourceUnavailable as exc:
        zones = {"cpu": [], "dram": []}
        reasons["cpu"].append(str(exc))
        reasons["dram"].append(str(exc))
    if "cpu" not in overridden:
        if zones["cpu"]:
            counters.append(rapl.RaplCounter("cpu", zones["cpu"]))
        else:
            watts, note = tdp.watts_per_core(model, settings.watts_per_core)
            counters.append(CpuTimeCounter(watts, TreeCpuClock(pid)))
            reasons["cpu"].append(note)
    if "dram" not in overridden:
        if zones["dram"]:
            counters.append(rapl.RaplCounter("dram", zones["dram"]))
        else:
            if zones["cpu"]:
                reasons["dram"].append(f"RAPL has no DRAM zone under {rapl_root} (usual on AMD and client CPUs)")
            counters.append(DramEstimateCounter(settings.dram_watts_per_gb, pid))
            reasons["dram"].append(f"{settings.dram_watts_per_gb:g} W per resident GB (energy.dram_watts_per_gb)")


def _gpu_counter(
    nvml_module: ModuleType | None, gpu_ids: Sequence[str] | None, shared: bool, reasons: list[str]
) -> nvml.NvmlCounter | None:
    try:
        module = nvml.open_nvml(nvml_module)
    except SourceUnavailable as exc:
        reasons.append(str(exc))
        return None
    try:
        devices, skipped = nvml.select_devices(module, gpu_ids)
        reasons += skipped
        if devices:
            return nvml.NvmlCounter(module, devices, shared=shared)
        if not skipped:
            reasons.append("no GPU assigned to this process")
    except module.NVMLError as exc:
        reasons.append(f"NVML error: {exc}")
    module.nvmlShutdown()
    return None


def with_idle_baseline(settings: EnergySettings, **meter_args: object) -> EnergySettings:
    """``settings`` with ``idle_watts`` measured now over ``idle_baseline_s``, if asked for.

    Only counter sources (RAPL, NVML) have an idle power to subtract: the estimates
    already count only busy CPU time and resident memory, so they get none. The whole
    machine is measured (no CPU-share attribution): this is its idle draw.
    """
    if settings.idle_baseline_s <= 0:
        return settings
    meter = make_meter(settings, attribute=False, **meter_args)  # type: ignore[arg-type]
    try:
        meter.begin_window("idle-baseline")
        time.sleep(settings.idle_baseline_s)
        measured = meter.end_window("idle-baseline")
    finally:
        meter.close()
    idle = {
        r.component: r.energy_kwh * 3.6e6 / measured.duration_s
        for r in measured.components
        if r.present and r.source in (rapl.SOURCE, nvml.COUNTER_SOURCE, nvml.SAMPLED_SOURCE)
    }
    return settings.model_copy(update={"idle_watts": idle})


def driver_watts_per_core(settings: EnergySettings) -> float:
    """Watts per busy core on this machine: the user's figure, else the TDP table's.

    The driver converts its own CPU time (the searcher's overhead) with it.
    """
    return tdp.watts_per_core(tdp.cpu_model(), settings.watts_per_core)[0]
