"""Per-component energy reaches the trials table and the MLflow child runs of a real study."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import tuner
from tuner.study.files import read_trials_csv

pytestmark = pytest.mark.ray


def test_trials_record_components_sources_and_hardware(ray_session, tmp_path: Path):
    result = tuner.tune(
        {
            "objective": "tests.objectives_for_tests:quadratic",
            "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "strategy": "grid",
            "grid_resolution": 2,
            "max_concurrent_trials": 2,
            "energy": {"watts_per_core": 12.0, "overrides": {"gpu": {"watts": 5.0, "uncertainty": 0.3}}},
            "output_dir": tmp_path / "study",
        },
        budget_kwh=1.0,
        progress=False,
    )
    trials = read_trials_csv(result.output_dir / "trials.csv")
    done = trials[trials["status"] == "completed"]
    assert len(done) == 2
    assert (done["energy_source_cpu"] == "cpu-time-estimate").all()
    assert (done["energy_source_dram"] == "dram-rss-estimate").all()
    assert (done["energy_source_gpu"] == "user-override").all()
    total = done["energy_cpu_kwh"] + done["energy_dram_kwh"] + done["energy_gpu_kwh"]
    assert done["energy_kwh"].to_numpy() == pytest.approx(total.to_numpy())
    assert (done["energy_uncertainty_gpu"] == 0.3).all()
    assert done["energy_fallback_cpu"].str.contains("watts_per_core 12 W given").all()
    assert done["hw_cpu_model"].notna().all() and done["hw_node"].notna().all()

    client = MlflowClient(tracking_uri=result.tracking_uri)
    parent = client.get_run(result.mlflow_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.mlflow_run_id}'"
    )
    by_trial = {c.data.tags["greentune.trial_id"]: c for c in children}
    for _, row in done.iterrows():
        child = by_trial[row["trial_id"]]
        assert child.data.metrics["energy_cpu_kwh"] == pytest.approx(row["energy_cpu_kwh"])
        assert child.data.metrics["energy_gpu_kwh"] == pytest.approx(row["energy_gpu_kwh"])
        assert child.data.tags["energy_source_gpu"] == "user-override"
        assert child.data.tags["hw_cpu_model"] == row["hw_cpu_model"]
        assert child.data.tags["energy_fallback_gpu"] == "5 W given in energy.overrides.gpu"
