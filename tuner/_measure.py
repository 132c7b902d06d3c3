"""``tuner.measure``: the energy of any block of code, with the meter trials use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tuner.energy import EnergyMeter, Measurement, make_meter


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

    Without ``meter``, :func:`tuner.energy.make_meter` builds the best meter this
    machine allows (RAPL, NVML, else the CPU-time and DRAM estimates), with default
    energy settings; ``block.measurement.components`` has the per-component figures.
    """
    own_meter = meter is None
    meter = meter or make_meter()
    block = MeasuredBlock(name)
    meter.begin_window(name)
    try:
        yield block
    finally:
        block.measurement = meter.end_window(name)
        if own_meter:
            meter.close()
