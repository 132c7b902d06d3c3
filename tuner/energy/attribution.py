"""Sharing machine-level energy between concurrent trials, and the idle baseline.

RAPL counts a whole package, while several trials often run on one machine. A window
gets the share of the package energy equal to its process tree's share of the CPU time
the whole machine spent busy over the same window. Shares of concurrent windows, plus
the share of everything else running, add up to the whole (:func:`split_by_cpu_time`).
"""

from __future__ import annotations

from collections.abc import Mapping

import psutil

OTHER = "other"


def machine_busy_cpu_seconds() -> float:
    """CPU seconds all logical CPUs spent busy since boot (not idle, I/O wait or steal)."""
    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def cpu_share(own_cpu_s: float, machine_busy_s: float) -> float:
    """Fraction of the machine's busy CPU time that was ours, clamped to [0, 1].

    An idle machine (no busy time at all) attributes nothing to anyone.
    """
    if machine_busy_s <= 0:
        return 0.0
    return min(1.0, max(0.0, own_cpu_s / machine_busy_s))


def split_by_cpu_time(total: float, own_cpu_s: Mapping[str, float], machine_busy_s: float) -> dict[str, float]:
    """Split ``total`` between windows by CPU-time share; the rest goes to ``"other"``.

    The parts always add up to ``total``: if the windows' CPU time exceeds the machine's
    (clock skew between readings), their shares are scaled down to fit.
    """
    busy = max(machine_busy_s, sum(own_cpu_s.values()))
    parts = {name: total * cpu_share(cpu_s, busy) for name, cpu_s in own_cpu_s.items()}
    parts[OTHER] = total - sum(parts.values())
    return parts


def subtract_idle(joules: float, idle_watts: float, duration_s: float, share: float) -> float:
    """Energy above the idle baseline: our share of idle power x duration is removed.

    Never below zero: a window cannot use less than nothing.
    """
    return max(0.0, joules - idle_watts * duration_s * share)
