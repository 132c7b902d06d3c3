"""Energy meters: one small interface, one implementation per source."""

from tuner.energy.base import J_PER_KWH, EnergyMeter, Measurement
from tuner.energy.cputime import CpuTimeMeter, process_tree_cpu_seconds

__all__ = ["J_PER_KWH", "CpuTimeMeter", "EnergyMeter", "Measurement", "process_tree_cpu_seconds"]
