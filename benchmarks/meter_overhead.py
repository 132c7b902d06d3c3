"""The meter's own CPU cost at the default sampling rate, against the same workload without it.

Runs a fixed amount of work alternately without and with a meter (this machine's
fallback chain, default energy settings, the window read every 2 s like a trial's
heartbeat), in this process, and prints the process CPU time (all threads) of both and
their ratio. Because the work is fixed, the difference is the meter's own CPU: its
sampler thread (DRAM occupancy, GPU power, RAPL wraparound) and window reads. The
sampler thread's CPU time is also read directly (``time.thread_time`` inside it), which
is immune to other load on the machine.

    python benchmarks/meter_overhead.py [--steps 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from tuner.config import EnergySettings
from tuner.energy import make_meter


def step_busy() -> None:
    """CPU-bound: a training step stand-in (~50 ms)."""
    sum(i * i for i in range(250_000))


def step_mixed() -> None:
    """Half busy, half waiting (data loading, I/O)."""
    sum(i * i for i in range(125_000))
    time.sleep(0.025)


def run(step, steps: int, metered: bool) -> tuple[float, float, float]:
    """(process CPU s, wall s, sampler-thread CPU s) of one run."""
    meter = make_meter(EnergySettings()) if metered else None
    cpu0, wall0 = time.process_time(), time.monotonic()
    if meter:
        meter.begin_window("bench")
    last_read = time.monotonic()
    for _ in range(steps):
        step()
        if meter and time.monotonic() - last_read >= 2.0:
            meter.read_window("bench")
            last_read = time.monotonic()
    sampler = 0.0
    if meter:
        meter.end_window("bench")
        meter.close()
        sampler = meter.sampler_cpu_s
    return time.process_time() - cpu0, time.monotonic() - wall0, sampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    settings = EnergySettings()
    chain = sorted((c, k.source) for c, k in make_meter(settings).counters.items())
    print(f"default sampling period {settings.sample_interval_s} s; chain on this machine: {chain}")
    print(f"{'workload':<9}{'CPU s without':>14}{'CPU s with':>12}{'ratio':>8}"
          f"{'sampler CPU s':>15}{'sampler % of a core':>21}")
    for name, step in (("busy", step_busy), ("mixed", step_mixed)):
        without, with_meter, sampler, walls = [], [], [], []
        for _ in range(args.repeats):  # alternate, so drift hits both alike
            without.append(run(step, args.steps, metered=False)[0])
            cpu, wall, own = run(step, args.steps, metered=True)
            with_meter.append(cpu)
            sampler.append(own)
            walls.append(wall)
        base, metered = statistics.median(without), statistics.median(with_meter)
        own, wall = statistics.median(sampler), statistics.median(walls)
        print(f"{name:<9}{base:>14.3f}{metered:>12.3f}{metered / base:>8.3f}{own:>15.4f}{own / wall:>20.2%}")


if __name__ == "__main__":
    main()
