"""A study's budget, end to end on a real local Ray: why it ended, and an overshoot said loudly.

The objective reports its own energy, as a replayed trace does (``reports_energy``:
0.001 x (1 + x) kWh in a few milliseconds).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import tuner

pytestmark = pytest.mark.ray
X = {"x": {"type": "float", "low": 0.0, "high": 1.0}}


def _study(tmp_path: Path, name: str) -> dict:
    return {"objective": "tests.objectives_for_tests:reports_energy", "search_space": X, "strategy": "random",
            "seed": 0, "output_dir": tmp_path / name}


def test_a_study_ended_by_max_trials_says_so_and_derives_no_power_from_reported_energy(ray_session, tmp_path):
    result = tuner.tune(_study(tmp_path, "capped"), budget_kwh=1.0, max_trials=3, progress=False)
    assert len(result.trials) == 3
    assert result.finish_reason == "max_trials reached"
    assert "stopped because: max_trials reached" in result.summary()
    state = json.loads((result.output_dir / "study.json").read_text())
    assert state["finish_reason"] == "max_trials reached"
    parent = MlflowClient(tracking_uri=result.tracking_uri).get_run(result.mlflow_run_id)
    assert parent.data.tags["greentune.finish_reason"] == "max_trials reached"
    # 0.001-0.002 kWh reported over the objective's few milliseconds read as ~1e6 W: the
    # energy was not metered over that window, so no mean power is derived from it
    done = result.trials[result.trials["status"] == "completed"]
    assert len(done) == 3 and (done["energy_source"] == "reported").all()
    assert done["avg_power_w"].isna().all()
    assert done["energy_power_note"].str.startswith("not derived").all()
    assert not result.over_budget and result.over_budget_kwh == 0.0


def test_a_study_that_ends_over_its_budget_says_so_in_the_console_the_result_and_mlflow(
        ray_session, tmp_path, caplog, capsys):
    # The first trial cannot be priced (nothing has completed) and costs at least 0.001 kWh.
    budget = 0.0009
    with caplog.at_level(logging.WARNING, logger="tuner"):
        result = tuner.tune(_study(tmp_path, "over"), budget_kwh=budget, progress=True)
    assert result.total_energy_kwh > budget
    assert result.over_budget
    assert result.over_budget_kwh == pytest.approx(result.total_energy_kwh - budget)
    assert result.finish_reason  # every study ends with a reason
    summary = result.summary()
    assert "OVER BUDGET" in summary and f"{100 * result.total_energy_kwh / budget:.1f} %" in summary
    assert "OVER BUDGET" in capsys.readouterr().err  # the summary printed with the progress
    assert any("over its energy budget" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    parent = MlflowClient(tracking_uri=result.tracking_uri).get_run(result.mlflow_run_id)
    assert parent.data.tags["greentune.over_budget"] == "true"
    assert parent.data.metrics["over_budget_kwh"] == pytest.approx(result.over_budget_kwh)
    assert parent.data.metrics["budget_used"] == pytest.approx(result.total_energy_kwh / budget)
    assert math.isclose(parent.data.metrics["budget_kwh"], budget)
