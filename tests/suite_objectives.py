"""Objectives for tests/test_suite.py: a suite problem as a user's objective for ``tuner.tune()``.

The accuracy is the trace's expected one (no sampled run), so that ``tune()`` and the
suite's ask/tell driver see the same outcomes whatever order Ray draws randomness in.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _trace() -> Any:
    from benchmarks import zeus_traces as zt

    data = Path(os.environ.get("GREENTUNE_DATA") or ROOT.parent / "shared" / "data")
    return zt.load_problem(data, "squad/rtx6000")


def zeus_squad(params: dict[str, Any]) -> dict[str, float]:
    """squad on an RTX6000: expected accuracy and the kWh the trace gives, reported."""
    trace = _trace()
    batch, power, epochs = int(params["batch_size"]), int(params["power_limit"]), int(params["epochs"])
    return {"accuracy": trace.expected_accuracy(batch, epochs), "energy_kwh": trace.energy_kwh(batch, power, epochs)}
