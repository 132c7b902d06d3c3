"""Fail fast where it saves energy: a study whose trials keep failing stops launching them.

Real studies on the session's local Ray, through the Python API and the CLI (in process,
so no second Ray starts). ``max_trials`` caps each study, so that a regression costs a
few trials rather than a whole budget.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import tuner
from tuner import cli

pytestmark = pytest.mark.ray

X = {"x": {"type": "float", "low": 0.0, "high": 1.0}}


def test_a_study_whose_objective_always_raises_stops_after_n_failures(ray_session, tmp_path: Path):
    from tuner.errors import NoCompletedTrialWarning

    out = tmp_path / "broken"
    with pytest.warns(NoCompletedTrialWarning, match="no trial completed"):
        result = tuner.tune(
            {"objective": "tests.objectives_for_tests:always_raises", "search_space": X, "strategy": "random",
             "seed": 0, "max_trials": 8, "max_concurrent_trials": 1, "max_consecutive_failures": 3,
             "output_dir": out},
            budget_kwh=1.0,
            progress=False,
        )
    assert len(result.trials) == 3 and (result.trials["status"] == "failed").all()
    assert result.finish_reason.startswith(
        "3 consecutive trial failures: objective raised TypeError: unsupported operand type(s)")
    assert result.consecutive_failures == 3
    assert "\n" not in result.finish_reason
    assert result.total_energy_kwh < 0.01  # a sliver of the budget, not 99 % of it
    state = json.loads((out / "study.json").read_text())
    assert state["finish_reason"] == result.finish_reason and state["consecutive_failures"] == 3
    assert "stopped because: 3 consecutive trial failures" in result.summary()


def test_cli_prints_the_reason_and_exits_3(ray_session, tmp_path: Path, capsys: pytest.CaptureFixture):
    study = tmp_path / "study.yaml"
    study.write_text(
        "objective: tests.objectives_for_tests:always_raises\nbudget_kwh: 1.0\nstrategy: random\nseed: 1\n"
        "max_trials: 6\nmax_concurrent_trials: 1\nmax_consecutive_failures: 2\n"
        "search_space:\n  x: {type: float, low: 0.0, high: 1.0}\n"
    )
    code = cli.main(["run", str(study), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 3, err[-3000:]
    assert "greentune: stopped: 2 consecutive trial failures: objective raised TypeError" in err


BURN = {"seconds": 20.0}  # far more than the budget; cut at its first report (every 0.5 CPU-second)
TINY_STUDY = {"objective": "tests.objectives_for_tests:burner", "search_space": {**X, **BURN}, "strategy": "random",
              "seed": 0, "max_trials": 2, "max_concurrent_trials": 1, "energy": {"watts_per_core": 10.0}}


def test_a_budget_smaller_than_one_trial_warns_before_and_says_so_after(ray_session, tmp_path: Path):
    from tuner.errors import BudgetWarning, NoCompletedTrialWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = tuner.tune({**TINY_STUDY, "output_dir": tmp_path / "tiny"}, budget_kwh=1e-7, progress=False)
    assert result.completed.empty
    ours = [(w.category, str(w.message)) for w in caught if issubclass(w.category, tuner.GreentuneWarning)]
    assert [category for category, _ in ours] == [BudgetWarning, NoCompletedTrialWarning]  # before, and after
    assert ours[0][1].startswith("budget_kwh 1e-07 kWh is less than one trial is expected to spend")
    assert ours[1][1] == "no trial completed (energy budget spent); the Pareto front is empty"
    assert result.summary().startswith("NO TRIAL COMPLETED: the Pareto front is empty")


def test_cli_warns_in_one_line_and_exits_4_when_no_trial_completed(ray_session, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture):
    study = tmp_path / "study.yaml"
    study.write_text(
        "objective: tests.objectives_for_tests:burner\nbudget_kwh: 1.0e-7\nstrategy: random\nseed: 0\n"
        "max_trials: 2\nmax_concurrent_trials: 1\nenergy: {watts_per_core: 10.0}\n"
        "search_space:\n  x: {type: float, low: 0.0, high: 1.0}\n  seconds: 20.0\n"
    )
    code = cli.main(["run", str(study), "--output-dir", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 4, err[-3000:]
    assert "greentune: warning: budget_kwh 1e-07 kWh is less than one trial is expected to spend" in err
    assert "greentune: no trial completed (energy budget spent); the Pareto front is empty" in err
