"""Pareto front, knee and best() on hand-made tables whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tuner.pareto import pareto_mask
from tuner.result import TuneResult


def _result(rows, mode="max"):
    trials = pd.DataFrame(rows, columns=["trial_id", "status", "x", "accuracy", "energy_kwh"])
    return TuneResult(trials=trials, metric="accuracy", mode=mode, budget_kwh=1.0,
                      total_energy_kwh=float(trials["energy_kwh"].sum()) + 0.01,
                      overhead_kwh=0.01, param_names=["x"])


ROWS = [
    ("a", "completed", 1, 0.70, 0.001),   # front: cheapest
    ("b", "completed", 2, 0.90, 0.010),   # front: knee
    ("c", "completed", 3, 0.95, 0.100),   # front: most accurate
    ("d", "completed", 4, 0.80, 0.050),   # dominated by b
    ("e", "failed", 5, None, 0.0005),     # failed: never on the front
    ("f", "stopped_by_budget", 6, 0.99, 0.0001),
]


def test_pareto_mask_keeps_only_non_dominated_points():
    metric = np.array([0.7, 0.9, 0.95, 0.8])
    energy = np.array([0.001, 0.01, 0.1, 0.05])
    assert pareto_mask(metric, energy, "max").tolist() == [True, True, True, False]
    assert pareto_mask(metric, energy, "min").tolist() == [True, False, False, False]


def test_front_uses_completed_trials_only_sorted_by_energy():
    result = _result(ROWS)
    assert result.pareto_front["trial_id"].tolist() == ["a", "b", "c"]


def test_knee_is_closest_to_the_ideal_corner_in_log_energy():
    # normalised: a=(0, 0), b=(0.8, 0.5), c=(1, 1) in (accuracy, log-energy);
    # distance to (1, 0): a=1.0, b=0.539, c=1.0
    assert _result(ROWS).knee()["trial_id"] == "b"


def test_best_respects_limits():
    result = _result(ROWS)
    assert result.best()["trial_id"] == "c"
    assert result.best(max_energy_kwh=0.02)["trial_id"] == "b"
    assert result.best(min_accuracy=0.85)["trial_id"] == "b"  # cheapest that reaches it
    assert result.best(min_accuracy=0.85, max_energy_kwh=0.2)["trial_id"] == "c"
    assert result.best(min_accuracy=0.99) is None


def test_minimised_metric_turns_the_front_around():
    rows = [("a", "completed", 1, 0.5, 0.001), ("b", "completed", 2, 0.2, 0.01),
            ("c", "completed", 3, 0.6, 0.02)]
    result = _result(rows, mode="min")
    assert result.pareto_front["trial_id"].tolist() == ["a", "b"]
    assert result.best()["trial_id"] == "b"


def test_empty_study_has_empty_front_and_no_knee():
    result = _result([("e", "failed", 1, None, 0.001)])
    assert result.pareto_front.empty
    assert result.knee() is None
    assert "empty" in result.front_table()


def test_summary_states_energy_and_source():
    result = _result(ROWS)
    result.trials["energy_source"] = "cpu-time-estimate"
    text = result.summary()
    assert "6 (" in text and "cpu-time-estimate" in text and "tuner overhead 0.01" in text


def test_summary_says_loudly_when_no_trial_completed():
    result = _result([("e", "failed", 1, None, 0.001)])
    result.finish_reason = "energy budget spent"
    assert result.summary().splitlines()[0] == (
        "NO TRIAL COMPLETED: the Pareto front is empty (stopped because: energy budget spent)")
    assert "NO TRIAL" not in _result(ROWS).summary()
    nothing = _result([])
    nothing.trials = pd.DataFrame()  # no trial ever started
    assert nothing.completed.empty and nothing.summary().startswith("NO TRIAL COMPLETED")


def test_summary_shows_carbon_waits_and_pauses_and_why():
    result = _result(ROWS)
    result.carbon = {"carbon_policy": "threshold", "carbon_waited_s": 5400.0, "carbon_waits": 2,
                     "carbon_wait_reason": "intensity reaches 300 g/kWh in 1 h",
                     "carbon_released": "deadline near: 2 h of work left and 2.5 h to the deadline, so launches "
                                        "no longer wait",
                     "carbon_pauses": 3, "carbon_paused_s": 720.0}
    lines = result.summary().splitlines()
    assert ("carbon wait: trial launches held for 1.5 h in 2 waits (policy threshold): intensity reaches "
            "300 g/kWh in 1 h; then deadline near: 2 h of work left and 2.5 h to the deadline, so launches no "
            "longer wait") in lines
    assert "carbon pauses: 3 pauses of running trials, 12 min of trial time paused" in lines
    result.carbon = {"carbon_policy": "flexible-start", "carbon_waited_s": 0.0, "carbon_waits": 0}
    assert "carbon wait: none (policy flexible-start)" in result.summary().splitlines()
    result.carbon = {}
    assert "carbon wait" not in result.summary()
