"""CO2 reaches the trials table, the TuneResult and MLflow in a real study on real Ray."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
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
    assert parent.data.params["carbon.provider"] == "static"
    child = client.get_run(trials["mlflow_run_id"].iloc[0])
    assert child.data.metrics["co2_kg"] == pytest.approx(trials["co2_kg"].iloc[0])
    assert child.data.tags["carbon_provider"] == "static (user override)"


@pytest.mark.slow
def test_threshold_policy_waits_for_clean_power_and_the_saving_is_booked(
    ray_session, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    # a trace that is dirty (500 g/kWh) for the next 45 s, then clean (100) for a day (45 s:
    # opening the study and MLflow took over 15 s on a loaded 2-core machine, so the first
    # launch came after a 15 s dirty spell and nothing waited)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    times = [now - pd.Timedelta("1min"), now + pd.Timedelta("45s")]
    times += [now + pd.Timedelta(hours=h) for h in range(1, 26)]
    values = [500.0, 100.0] + [100.0] * 25
    trace = tmp_path / "trace.csv"
    pd.DataFrame(
        {"Time": [t.strftime("%Y-%m-%dT%H:%M:%S+00:00") for t in times], "Carbon Intensity": values}
    ).to_csv(trace, index=False)
    result = tuner.tune(
        {
            "objective": objs.reports_energy,
            "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "strategy": "random",
            "seed": 1,
            "max_trials": 1,
            "carbon": {
                "provider": "csv",
                "csv_path": str(trace),
                "policy": "threshold",
                "threshold_g_per_kwh": 200.0,
                "deadline": "24h",
            },
            "output_dir": tmp_path / "threshold",
            # a short study, and it says so: 0.01 kWh at one 10 W trial is 1 h of work
            # (a 1 kWh budget would be 100 h, which no 24 h deadline can shift)
            "energy": {"watts_per_core": 10.0},
        },
        budget_kwh=0.01,
        progress=True,
    )
    # the console shows the wait as it starts (its length and reason) and as it ends, and the summary
    # says how long launches waited and why
    err = capfd.readouterr().err
    # up to 15 s, less what the study's start-up took
    assert re.search(r"\[greentune\] carbon: holding trial launches for \d+ s \(until \d\d:\d\d UTC\): "
                     r"intensity reaches 200 g/kWh in ", err)
    assert re.search(r"\[greentune\] carbon: launching trials after a \d+ s wait", err)
    summary = [line for line in result.summary().splitlines() if line.startswith("carbon wait:")]
    assert summary and "in 1 wait (policy threshold): intensity reaches 200 g/kWh" in summary[0]
    assert summary[0] in err
    (row,) = result.trials.to_dict("records")
    assert row["status"] == "completed"
    assert row["carbon_intensity_mean"] == pytest.approx(100.0)  # it ran after the wait
    assert result.carbon["carbon_waited_s"] > 1.0
    assert result.carbon["carbon_waits"] == 1
    assert "threshold" in result.carbon["carbon_policy"]
    assert result.carbon["carbon_work_basis"] == (
        "1 h expected: budget 0.01 kWh / (1 trial(s) at once x 10 W)")
    # at the study's start it would have run at 500 g/kWh (the trial lasts a moment)
    energy = row["energy_kwh"]
    assert row["co2_kg"] == pytest.approx(energy * 100 / 1000)
    overhead_kg = result.co2_kg - row["co2_kg"]
    assert result.co2_counterfactual_kg - overhead_kg == pytest.approx(
        energy * 500 / 1000, rel=0.05
    )
    client = MlflowClient(tracking_uri=result.tracking_uri)
    parent = client.get_run(result.mlflow_run_id)
    assert parent.data.metrics["carbon_waited_s"] == pytest.approx(result.carbon["carbon_waited_s"])
    assert parent.data.tags["greentune.carbon_policy"] == "threshold"
