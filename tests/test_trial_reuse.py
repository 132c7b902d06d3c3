"""Trials that share a process (``reuse_trial_processes``) are metered apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tuner

pytestmark = pytest.mark.ray


def _study(tmp_path: Path, kinds: list[str], seed: int = 0, **extra) -> tuner.TuneResult:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    return tuner.tune(
        {"objective": "tests.objectives_for_tests:pid_noter", "strategy": "grid", "seed": seed,
         "search_space": {"kind": {"type": "choice", "values": kinds}, "name": "t",
                          "pid_dir": str(pid_dir), "burn_s": 1.5, "sleep_s": 2.0},
         "max_concurrent_trials": 1, "energy": {"report_interval_s": 0.5}, "output_dir": tmp_path / "out",
         **extra},
        budget_kwh=1.0, progress=False,
    )


def test_two_trials_in_one_process_are_metered_apart(ray_session, tmp_path: Path):
    result = _study(tmp_path, ["burn", "sleep"])
    rows = result.trials.set_index("kind")
    assert list(rows["status"]) == ["completed", "completed"]
    assert len(set(rows["hw_pid"])) == 1, "the second trial should have reused the first one's process"
    assert rows.loc["burn", "cpu_time_s"] >= 1.2
    assert rows.loc["sleep", "cpu_time_s"] < 0.25  # none of the burn before it
    assert rows.loc["sleep", "energy_kwh"] < rows.loc["burn", "energy_kwh"] / 3


def test_a_stopped_trials_objective_ends_before_the_next_trial_meters(ray_session, tmp_path: Path):
    # the grid's seeded order: choose a seed that runs the flat (stopped) trial first
    seed = next(s for s in range(100) if np.random.default_rng(s).permutation(2)[0] == 0)
    result = _study(tmp_path, ["flat", "sleep"], seed=seed, early_stopping="pareto")
    rows = result.trials.set_index("kind")
    assert rows.loc["flat", "status"] == "stopped" and rows.loc["sleep", "status"] == "completed"
    assert len(set(rows["hw_pid"])) == 1, "the trial after the stopped one should have reused its process"
    # left running, the stopped objective would burn on in the sleeping trial's window
    # (0.76 CPU-s there when it did); it ended at its next report() instead
    assert rows.loc["sleep", "cpu_time_s"] < 0.25
    assert (tmp_path / "pids" / "t.ended").exists()
