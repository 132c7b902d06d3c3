"""CarbonGate inside a real Ray Tune run: Ray keeps polling while the gate says "not yet".

The clock runs one simulated hour per real second, so a three-hour wait takes seconds.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from tests.test_carbon_gate import T0, Counting, H, SeriesProvider, day_with, hourly
from tuner.carbon.gate import CarbonGate

pytestmark = pytest.mark.ray


class FastClock:
    """Simulated UTC time: T0 at the first reading (Ray's start-up is not counted), then one
    hour per real second."""

    def __init__(self) -> None:
        self.began: float | None = None

    def __call__(self):
        if self.began is None:
            self.began = time.monotonic()
        return T0 + timedelta(hours=time.monotonic() - self.began)


def trial(config: dict) -> dict:
    return {"x": float(config["i"])}


def test_ray_waits_for_the_gate_then_runs_every_trial(ray_session, tmp_path):
    from ray import tune

    clock = FastClock()
    provider = SeriesProvider(hourly(day_with(h3=10, h4=10, h5=10)), clock)
    gate = CarbonGate(Counting(limit=2), provider, deadline=T0 + 24 * H, clock=clock,
                      work=lambda: H, replan_every=timedelta(minutes=15))
    tuner = tune.Tuner(
        trial,
        tune_config=tune.TuneConfig(search_alg=gate, num_samples=2, max_concurrent_trials=1),
        run_config=tune.RunConfig(name="gate", storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    assert sorted(r.metrics["x"] for r in results) == [1.0, 2.0]
    assert len(gate.waits) == 1
    wait = gate.waits[0]
    assert wait.since < T0 + H  # held back from the first poll ...
    assert T0 + 3 * H <= wait.until < T0 + 5 * H  # ... until the low window (1 s polls)
    assert "starts in 3 h" in wait.reason
