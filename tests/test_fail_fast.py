"""Fail fast where it saves energy: a study whose trials keep failing stops launching them.

Real studies on the session's local Ray, through the Python API and the CLI (in process,
so no second Ray starts). ``max_trials`` caps each study, so that a regression costs a
few trials rather than a whole budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tuner
from tuner import cli

pytestmark = pytest.mark.ray

X = {"x": {"type": "float", "low": 0.0, "high": 1.0}}


def test_a_study_whose_objective_always_raises_stops_after_n_failures(ray_session, tmp_path: Path):
    out = tmp_path / "broken"
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
