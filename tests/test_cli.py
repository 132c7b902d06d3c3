"""``greentune run``: a bad file fails fast with no side effects; a good one prints the front."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _greentune(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "tuner.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300,
    )


def test_invalid_study_exits_2_naming_the_field_and_spends_nothing(tmp_path: Path):
    study = tmp_path / "study.yaml"
    study.write_text(
        "objective: tests.objectives_for_tests:quadratic\n"
        "budget_kwh: 0.01\n"
        "max_trails: 4\n"
        "search_space:\n  x: {type: float, low: 0.0, high: 1.0}\n"
    )
    proc = _greentune("run", str(study), cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown key 'max_trails'; did you mean 'max_trials'?" in proc.stderr
    assert not (tmp_path / "greentune-runs").exists()  # no study dir, no MLflow store, no Ray


def test_negative_budget_flag_is_rejected(tmp_path: Path):
    study = tmp_path / "study.yaml"
    study.write_text(
        "objective: tests.objectives_for_tests:quadratic\nbudget_kwh: 0.01\n"
        "search_space:\n  x: {type: float, low: 0.0, high: 1.0}\n"
    )
    proc = _greentune("run", str(study), "--budget-kwh", "-1", cwd=tmp_path)
    assert proc.returncode == 2
    assert "budget_kwh must be a positive number" in proc.stderr


@pytest.mark.ray
def test_run_prints_the_front_and_where_mlflow_is(tmp_path: Path):
    study = tmp_path / "study.yaml"
    study.write_text(
        "name: cli-demo\n"
        "objective: tests.objectives_for_tests:quadratic\n"
        "budget_kwh: 1.0\n"
        "strategy: grid\n"
        "grid_resolution: 3\n"
        "search_space:\n  x: {type: float, low: 0.0, high: 1.0}\n"
    )
    proc = _greentune("run", str(study), "--max-trials", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out_dir = tmp_path / "greentune-runs" / "cli-demo"
    assert "Pareto front" in proc.stdout
    assert "trials: 2 (2 completed)" in proc.stderr  # the summary closes the progress output
    assert proc.stdout.count("trials: 2 (2 completed)") == 0  # ...and is not repeated
    assert f"mlflow ui --backend-store-uri sqlite:///{out_dir}/mlflow.db" in proc.stdout
    assert "[greentune] trials:" in proc.stderr  # live progress
    assert (out_dir / "trials.csv").is_file() and (out_dir / "mlflow.db").is_file()


def test_version_comes_from_the_installed_distribution(capsys: pytest.CaptureFixture):
    from importlib.metadata import version

    from tuner import cli

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"greentune {version('greentune')}"


def test_every_run_option_has_help_and_the_exit_codes_are_listed(capsys: pytest.CaptureFixture):
    from tuner import cli

    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--strategy {bo,grid,random,sobol} search strategy: bo (Ax/BoTorch, the default)" in text
    assert "--seed SEED seed for the searcher" in text
    assert "3 stopped after max_consecutive_failures trials failed in a row" in text
