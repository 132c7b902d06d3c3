"""Real studies on a real local Ray, recorded in a real MLflow SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import tuner
from tests import objectives_for_tests as objs
from tuner.config import ConfigError
from tuner.energy import J_PER_KWH

pytestmark = pytest.mark.ray
X = {"x": {"type": "float", "low": 0.0, "high": 1.0}}


def _children(result: tuner.TuneResult):
    client = MlflowClient(tracking_uri=result.tracking_uri)
    parent = client.get_run(result.mlflow_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.mlflow_run_id}'"
    )
    return client, parent, children


def _overshoot_tolerance_kwh(result: tuner.TuneResult, interval_s: float) -> float:
    """One report interval of every trial that was still running when the budget stopped."""
    stopped = result.trials[result.trials["status"].isin(["stopped_by_budget", "completed"])]
    return float(stopped["avg_power_w"].fillna(0).sum()) * interval_s / J_PER_KWH


@pytest.mark.slow
def test_digits_mlp_study_finds_a_front_within_budget(ray_session, tmp_path: Path):
    pytest.importorskip("torch")
    budget = 0.00012
    result = tuner.tune(
        {
            "objective": "objectives.digits_mlp:digits_mlp",
            "search_space": {
                "width": {"type": "int", "low": 16, "high": 128, "log": True},
                "depth": {"type": "int", "low": 1, "high": 2},
                "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
                "batch_size": {"type": "choice", "values": [32, 64, 128], "ordered": True},
                "epochs": {"type": "int", "low": 1, "high": 8},
                "dropout": {"type": "float", "low": 0.0, "high": 0.3},
            },
            "seed": 0,
            "initial_trials": 3,
            "max_concurrent_trials": 2,
            "output_dir": tmp_path / "digits",
        },
        budget_kwh=budget,
        progress=False,
    )
    trials = result.trials
    completed = trials[trials["status"] == "completed"]
    assert len(completed) >= 3
    assert (completed["energy_kwh"] > 0).all()
    # estimates only; in a reused process a short trial's DRAM estimate (torch and the data
    # stay resident) can outweigh its CPU time, and the label names the larger part
    assert completed["energy_source"].isin(["cpu-time-estimate", "dram-rss-estimate"]).all()
    assert completed["accuracy"].between(0, 1).all()
    assert (completed["duration_s"] > 0).all() and (completed["avg_power_w"] > 0).all()
    assert (completed["n_reports"] >= 1).all()
    assert (completed["n_reports"] == completed["epochs"]).all()  # one report per epoch, the parameter intact
    # The ledger total is the trials plus the tuner's overhead, within budget + tolerance.
    assert result.total_energy_kwh == pytest.approx(trials["energy_kwh"].sum() + result.overhead_kwh)
    assert result.overhead_kwh > 0
    assert result.total_energy_kwh <= budget + _overshoot_tolerance_kwh(result, 2.0)
    assert not result.pareto_front.empty and result.knee() is not None

    client, parent, children = _children(result)
    assert len(children) == len(trials)
    assert parent.data.metrics["total_energy_kwh"] == pytest.approx(result.total_energy_kwh)
    assert parent.data.params["budget_kwh"] == str(budget)
    by_trial = {c.data.tags["greentune.trial_id"]: c for c in children}
    for _, row in completed.iterrows():
        child = by_trial[row["trial_id"]]
        assert child.data.metrics["energy_kwh"] == pytest.approx(row["energy_kwh"])
        assert child.data.metrics["accuracy"] == pytest.approx(row["accuracy"])
        assert child.data.tags["energy_source"] == row["energy_source"]
        assert child.info.status == "FINISHED"
        history = client.get_metric_history(child.info.run_id, "accuracy")
        assert len(history) >= row["n_reports"]  # one point per reported epoch, plus the final
    artifacts = {a.path for a in client.list_artifacts(result.mlflow_run_id)}
    assert {"trials.csv", "pareto.html", "pareto.png", "config.json"} <= artifacts
    assert (result.output_dir / "trials.csv").is_file()


def test_budget_stops_running_trials_and_counts_their_energy(ray_session, tmp_path: Path):
    budget = 0.00004  # 144 J: about 14 CPU-seconds at 10 W per core
    result = tuner.tune(
        {"objective": objs.burner, "search_space": {"seconds": 60.0, "x": X["x"]},
         "strategy": "random", "seed": 0, "max_concurrent_trials": 2, "output_dir": tmp_path / "burn"},
        budget_kwh=budget,
        progress=False,
    )
    trials = result.trials
    assert set(trials["status"]) == {"stopped_by_budget"}
    assert (trials["energy_kwh"] > 0).all()
    assert (trials["duration_s"] < 30).all()  # cut long before the objective's 60 s
    assert result.finish_reason == "energy budget spent"
    # Stopped within one report interval of the budget, on either side, and all counted.
    tolerance = _overshoot_tolerance_kwh(result, 2.0)
    assert budget - tolerance <= result.total_energy_kwh <= budget + tolerance
    _, _, children = _children(result)
    assert sorted(c.data.tags["greentune.status"] for c in children) == ["stopped_by_budget"] * len(trials)
    assert all(c.info.status == "KILLED" for c in children)


def test_failing_objective_fails_its_trial_and_the_study_goes_on(ray_session, tmp_path: Path):
    result = tuner.tune(
        {"objective": objs.failing, "search_space": X, "strategy": "grid", "grid_resolution": 4,
         "seed": 0, "output_dir": tmp_path / "fail"},
        budget_kwh=1.0,
        progress=False,
    )
    trials = result.trials.set_index("x")
    assert len(trials) == 4
    failed = trials[trials["status"] == "failed"]
    assert sorted(failed.index) == pytest.approx([2 / 3, 1.0])
    assert failed["error"].str.contains("RuntimeError: deliberate failure").all()
    assert (failed["energy_kwh"] > 0).all()  # the CPU it burnt before failing is counted
    assert (trials[trials["status"] == "completed"].index < 0.5).all()
    assert result.finish_reason == "search space exhausted"
    _, _, children = _children(result)
    statuses = sorted(c.info.status for c in children)
    assert statuses == ["FAILED", "FAILED", "FINISHED", "FINISHED"]
    assert all("deliberate failure" in c.data.tags["greentune.error"]
               for c in children if c.info.status == "FAILED")


@pytest.mark.parametrize(
    ("objective", "message"),
    [(objs.missing_metric, "did not return metric 'accuracy'"),
     (objs.not_finite, "metric 'accuracy' is not finite")],
)
def test_bad_metrics_fail_the_trial_naming_the_metric(ray_session, tmp_path: Path, objective, message):
    result = tuner.tune(
        {"objective": objective, "search_space": X, "strategy": "random", "max_trials": 1,
         "output_dir": tmp_path / "bad"},
        budget_kwh=1.0,
        progress=False,
    )
    (row,) = result.trials.to_dict("records")
    assert row["status"] == "failed" and message in row["error"]
    assert result.pareto_front.empty


def test_reported_energy_is_used_and_tagged_and_trials_stay_light(ray_session, tmp_path: Path):
    result = tuner.tune(
        {"objective": objs.reports_energy, "search_space": X, "strategy": "sobol", "seed": 1,
         "max_trials": 3, "output_dir": tmp_path / "reported"},
        budget_kwh=1.0,
        progress=False,
    )
    done = result.trials
    assert (done["status"] == "completed").all()
    assert (done["energy_source"] == "reported").all()
    assert done["energy_kwh"].to_numpy() == pytest.approx(0.001 * (1 + done["x"].to_numpy()))

    light = tuner.tune(
        {"objective": objs.heavy_modules, "search_space": X, "strategy": "sobol", "seed": 1,
         "max_trials": 1, "output_dir": tmp_path / "light"},
        budget_kwh=1.0,
        progress=False,
    )
    row = light.trials.iloc[0]
    assert row["status"] == "completed"
    assert (row["ax_imported"], row["torch_imported"], row["mlflow_imported"]) == (0, 0, 0)


def test_an_existing_study_directory_is_not_overwritten(ray_session, tmp_path: Path):
    config = {"objective": objs.quadratic, "search_space": X, "strategy": "random", "max_trials": 1,
              "output_dir": tmp_path / "once"}
    first = tuner.tune(config, budget_kwh=1.0, progress=False)
    assert first.finish_reason == "max_trials reached"  # Ray stops asking at num_samples; the study still says why
    before = (tmp_path / "once" / "trials.csv").read_text()
    with pytest.raises(ConfigError, match=r"already holds a finished study \(max_trials reached\)"):
        tuner.tune(config, budget_kwh=1.0, progress=False)
    assert (tmp_path / "once" / "trials.csv").read_text() == before


def test_pareto_early_stopping_ends_flat_trials(ray_session, tmp_path: Path):
    result = tuner.tune(
        {"objective": objs.plateau, "search_space": X, "strategy": "grid", "grid_resolution": 2,
         "early_stopping": "pareto", "max_concurrent_trials": 1, "output_dir": tmp_path / "es"},
        budget_kwh=1.0,
        progress=False,
    )
    trials = result.trials
    assert len(trials) == 2
    assert set(trials["status"]) == {"stopped"}  # flat curves: stopped by the rule, not the budget
    # CPU time is no gauge here (a fresh worker's imports count); the reports made are.
    assert (trials["n_reports"] < objs.PLATEAU_REPORTS).all()
    assert result.finish_reason == "search space exhausted"
    # each says why: the rule, the report it was stopped after, in trials.csv and MLflow
    assert trials["stop_reason"].str.startswith("pareto early stopping after report ").all()
    assert trials["stop_reason"].str.contains("plateau: the metric went from").all()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=result.tracking_uri)
    for run_id, reason in zip(trials["mlflow_run_id"], trials["stop_reason"], strict=True):
        run = client.get_run(run_id)
        assert run.info.status == "KILLED" and run.data.tags["greentune.stop_reason"] == reason
