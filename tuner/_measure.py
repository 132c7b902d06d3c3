"""``tuner.measure``: the energy of any block of code, with the meter trials use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tuner.energy import CpuTimeMeter, EnergyMeter, Measurement


@dataclass
class MeasuredBlock:
    """Filled in when the ``with`` block exits."""

    name: str
    measurement: Measurement | None = None


@contextmanager
def measure(name: str = "block", meter: EnergyMeter | None = None) -> Iterator[MeasuredBlock]:
    """Measure the energy of a ``with`` block::

        with tuner.measure("preprocess") as block:
            prepare_data()
        print(block.measurement.energy_kwh, block.measurement.source)

    Without ``meter``, this process tree's CPU time is converted at 10 W per core.
    """
    meter = meter or CpuTimeMeter(watts_per_core=10.0)
    block = MeasuredBlock(name)
    meter.begin_window(name)
    try:
        yield block
    finally:
        block.measurement = meter.end_window(name)
