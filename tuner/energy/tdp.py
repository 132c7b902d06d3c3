"""Watts per busy core for the CPU-time estimate: a small TDP table matched by CPU model.

Per-core power is the package TDP over its physical cores: what one fully busy core
draws when the package runs at TDP. Figures are the vendors' published specifications
(Intel ARK, ark.intel.com; AMD product pages, amd.com/en/products/specifications).
An unknown model gets :data:`DEFAULT_WATTS_PER_CORE`, and says so.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

DEFAULT_WATTS_PER_CORE = 10.0

# (pattern matched in the model string, TDP watts, physical cores per package)
TDP_TABLE: tuple[tuple[str, float, int], ...] = (
    ("Xeon(R) Gold 6148 ", 150, 20),
    ("Xeon(R) Gold 6248 ", 150, 20),
    ("Xeon(R) Platinum 8168 ", 205, 24),
    ("Xeon(R) Platinum 8280 ", 205, 28),
    ("Xeon(R) Platinum 8380 ", 270, 40),
    ("Xeon(R) Platinum 8480+", 350, 56),
    ("Xeon(R) CPU E5-2680 v4", 120, 14),
    ("Xeon(R) CPU E5-2690 v4", 135, 14),
    ("Core(TM) i7-8700 ", 65, 6),
    ("Core(TM) i9-9900K ", 95, 8),
    ("EPYC 7742 ", 225, 64),
    ("EPYC 7763 ", 280, 64),
    ("EPYC 9654 ", 360, 96),
    ("Ryzen 7 5800X ", 105, 8),
    ("Ryzen 9 5950X ", 105, 16),
)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU model string (``model name`` in ``/proc/cpuinfo``), or the platform's guess."""
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
    except OSError:
        match = None
    return match.group(1).strip() if match else (platform.processor() or "unknown")


def watts_per_core(model: str, user_value: float | None = None) -> tuple[float, str]:
    """Watts per busy core, and a note saying where the figure came from."""
    if user_value is not None:
        return user_value, f"watts_per_core {user_value:g} W given in the energy settings"
    padded = model + " "
    for pattern, tdp, cores in TDP_TABLE:
        if pattern in padded:
            return tdp / cores, f"{tdp:g} W TDP / {cores} cores for '{model}' (TDP table)"
    return DEFAULT_WATTS_PER_CORE, (
        f"CPU model '{model}' is not in the TDP table: default {DEFAULT_WATTS_PER_CORE:g} W per core; "
        "set energy.watts_per_core for a better estimate"
    )
