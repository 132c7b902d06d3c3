"""CO2 reaches the trials table, the TuneResult and MLflow in a real study on real Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import tuner
from tests import objectives_for_tests as objs

pytestmark = pytest.mark.ray


def test_study_records_trial_and_study_co2(ray_session, tmp_path: Path) -> None:
    result = tuner.tune(
        {
            "objective": objs.reports_energy,  # energy_kwh = 0.001 x (1 + x), known exactly
            "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "strategy": "sobol",
            "seed": 3,
            "max_trials": 2,
            "pue": 1.5,
            "carbon": {"provider": "static", "g_per_kwh": 200.0},
            "output_dir": tmp_path / "co2",
        },
        budget_kwh=1.0,
        progress=False,
    )
    trials = result.trials
    assert (trials["status"] == "completed").all()
    expected = trials["energy_kwh"] * 200.0 * 1.5 / 1000
    assert trials["co2_kg"].to_numpy() == pytest.approx(expected.to_numpy())
    assert (trials["carbon_intensity_mean"] == 200.0).all()
    assert (trials["carbon_provider"] == "static (user override)").all()

    overhead_kg = result.overhead_kwh * 200.0 * 1.5 / 1000
    assert result.co2_kg == pytest.approx(expected.sum() + overhead_kg)
    # constant intensity: starting everything at once would have emitted the same
    assert result.co2_counterfactual_kg == pytest.approx(result.co2_kg)
    assert "CO2:" in result.summary()

    client = MlflowClient(tracking_uri=result.tracking_uri)
    parent = client.get_run(result.mlflow_run_id)
    assert parent.data.metrics["co2_kg"] == pytest.approx(result.co2_kg)
    assert parent.data.metrics["co2_counterfactual_kg"] == pytest.approx(
        result.co2_counterfactual_kg
    )
    assert parent.data.params["carbon_provider"] == "static"
    child = client.get_run(trials["mlflow_run_id"].iloc[0])
    assert child.data.metrics["co2_kg"] == pytest.approx(trials["co2_kg"].iloc[0])
    assert child.data.tags["carbon_provider"] == "static (user override)"
