"""Faults injected for real: for each, how many trials and how much measured energy were lost.

The answer must be zero, or exactly what was in flight, counted. See the README's
"When things break" for what each fault does to a study.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import tuner
from tests import fault_objectives as faults

pytestmark = pytest.mark.ray
X = {"x": {"type": "float", "low": 0.0, "high": 1.0}}


def _children(tracking_uri: str, run_id: str) -> dict[str, object]:
    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.get_run(run_id)
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    return {run.data.tags["greentune.trial_id"]: run for run in runs}


def _ray_results(out: Path, trial_id: str) -> list[dict]:
    """What Ray itself recorded of a trial's results (its JSON logger), oldest first."""
    (path,) = (out / "ray").glob(f"*{trial_id}*/result.json")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------ 1. trial killed


def test_sigkilled_trial_is_failed_and_its_energy_to_the_last_heartbeat_counted(ray_session, tmp_path: Path):
    out = tmp_path / "kill"
    result = tuner.tune(
        {"objective": faults.killed_after_reports, "search_space": X, "strategy": "grid",
         "grid_resolution": 3, "seed": 0, "max_concurrent_trials": 1, "output_dir": out},
        budget_kwh=1.0, progress=False,
    )
    trials = result.trials.set_index("x")
    assert len(trials) == 3
    killed = trials.loc[1.0]
    assert killed["status"] == "failed" and killed["error"]
    assert (trials.drop(index=1.0)["status"] == "completed").all()  # the others were not touched
    assert result.finish_reason == "search space exhausted"
    # Counted: the energy of the killed trial's last heartbeat, as Ray itself logged it.
    heard = _ray_results(out, killed["trial_id"])
    assert heard[-1]["greentune_status"] == "running" and heard[-1]["greentune_epochs"] == faults.KILL_REPORTS
    assert killed["energy_kwh"] > 0
    assert killed["energy_kwh"] == pytest.approx(heard[-1]["energy_kwh"])
    assert killed["n_reports"] == faults.KILL_REPORTS
    assert result.total_energy_kwh == pytest.approx(trials["energy_kwh"].sum() + result.overhead_kwh)
    # The table on disk and MLflow agree with the result.
    on_disk = pd.read_csv(out / "trials.csv").set_index("trial_id")
    assert on_disk.loc[killed["trial_id"], "status"] == "failed"
    assert on_disk["energy_kwh"].sum() == pytest.approx(trials["energy_kwh"].sum())
    children = _children(result.tracking_uri, result.mlflow_run_id)
    child = children[killed["trial_id"]]
    assert child.info.status == "FAILED" and child.data.tags["greentune.status"] == "failed"
    assert child.data.metrics["energy_kwh"] == pytest.approx(killed["energy_kwh"])
    assert sorted(c.info.status for c in children.values()) == ["FAILED", "FINISHED", "FINISHED"]
