"""One real study on Ray: its report lands in MLflow, and `greentune report` rebuilds it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import tuner

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
REPORT_FILES = {"report.html", "pareto.html", "pareto.png", "parallel.html", "slices.html", "price_tag.json",
                "sensitivity.csv", "sensitivity.png", "budget_curve.png", "budget_curve_kwh.csv",
                "budget_curve_trials.csv", "progress.png", "progress.csv", "trials.csv"}


def _greentune(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_study_report_in_mlflow_and_rebuilt_by_greentune_report(ray_session, tmp_path: Path):
    result = tuner.tune(
        {"objective": "tests.objectives_for_tests:quadratic", "name": "report-e2e",
         "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
         "strategy": "grid", "grid_resolution": 5, "max_concurrent_trials": 2,
         "report": {"price_per_kwh": 0.25, "currency": "GBP"}, "output_dir": tmp_path / "study"},
        budget_kwh=1.0, progress=False,
    )
    assert len(result.completed) == 5
    client = MlflowClient(tracking_uri=result.tracking_uri)
    logged = {a.path for a in client.list_artifacts(result.mlflow_run_id)}
    assert REPORT_FILES <= logged, REPORT_FILES - logged

    tag = json.loads(Path(client.download_artifacts(result.mlflow_run_id, "price_tag.json", str(tmp_path))).read_text())
    assert tag["total_kwh"] == pytest.approx(result.total_energy_kwh)
    assert tag["trials_kwh"] == pytest.approx(result.trials["energy_kwh"].sum())
    assert tag["overhead_kwh"] == pytest.approx(result.overhead_kwh)
    assert tag["cost"] == pytest.approx(0.25 * result.total_energy_kwh) and tag["currency"] == "GBP"
    assert tag["grid"]["points"] == 5
    assert result.plot_pareto().data and result.plot_budget_curve().axes

    # From MLflow, into a fresh directory: the same numbers, without running anything.
    proc = _greentune("report", result.mlflow_run_id, "--tracking-uri", result.tracking_uri,
                      "--output-dir", str(tmp_path / "from-mlflow"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rebuilt = json.loads((tmp_path / "from-mlflow" / "price_tag.json").read_text())
    for key in ("total_kwh", "trials_kwh", "overhead_kwh", "cost", "n_trials"):
        assert rebuilt[key] == pytest.approx(tag[key])
    assert rebuilt["grid"]["kwh"] == pytest.approx(tag["grid"]["kwh"])
    page = (tmp_path / "from-mlflow" / "report.html").read_text()
    for trial_id in result.pareto_front["trial_id"]:
        assert f"<td>{trial_id}</td>" in page

    # From the study directory on disk.
    proc = _greentune("report", str(tmp_path / "study"), "--output-dir", str(tmp_path / "from-disk"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sens_disk = pd.read_csv(tmp_path / "from-disk" / "sensitivity.csv")
    sens_mlflow = pd.read_csv(tmp_path / "from-mlflow" / "sensitivity.csv")
    pd.testing.assert_frame_equal(sens_disk, sens_mlflow)
    assert json.loads((tmp_path / "from-disk" / "price_tag.json").read_text())["total_kwh"] == pytest.approx(
        tag["total_kwh"])

    # A trial's run is not a study: the error names the study run to use instead.
    child = result.trials["mlflow_run_id"].dropna().iloc[0]
    proc = _greentune("report", child, "--tracking-uri", result.tracking_uri, cwd=tmp_path)
    assert proc.returncode == 2 and result.mlflow_run_id in proc.stderr
