"""Energy meters: one small interface, one counter per source, a fallback chain.

``make_meter(settings)`` builds the best meter this machine allows; see
:mod:`tuner.energy.factory` for the chain and README's energy section for the sources.
"""

from tuner.energy.base import J_PER_KWH, ComponentReading, EnergyMeter, Measurement
from tuner.energy.counter import Delta, EnergyCounter
from tuner.energy.cputime import process_tree_cpu_seconds
from tuner.energy.factory import driver_watts_per_core, make_meter, with_idle_baseline
from tuner.energy.meter import ChainMeter, CpuTimeMeter
from tuner.errors import SourceUnavailable

__all__ = [
    "J_PER_KWH",
    "ChainMeter",
    "ComponentReading",
    "CpuTimeMeter",
    "Delta",
    "EnergyCounter",
    "EnergyMeter",
    "Measurement",
    "SourceUnavailable",
    "make_meter",
    "process_tree_cpu_seconds",
    "driver_watts_per_core",
    "with_idle_baseline",
]
