"""``greentune submit`` and ``greentune status`` against a real Ray head with its job server.

The head is a ``ray start --head --include-dashboard true --dashboard-host 127.0.0.1`` of
its own (tests/local_cluster.py), torn down by the fixture. Everything runs through the
CLI in subprocesses, as a user would type it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.local_cluster import LocalCluster, free_port
from tuner.study.files import read_trials_csv

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[1]

_OBJECTIVE = '''\
import os

# At import, in the job's driver: what of the laptop's folder reached the cluster.
SHIPPED = set(os.listdir(os.path.dirname(os.path.abspath(__file__))))


def objective(params):
    return {"accuracy": params["x"], "has_env": float(".env" in SHIPPED),
            "has_runs": float("greentune-runs" in SHIPPED), "has_git": float(".git" in SHIPPED),
            "has_db": float("mlflow.db" in SHIPPED), "has_study": float("study.yaml" in SHIPPED)}
'''


@pytest.fixture(scope="module")
def head():
    for attempt in range(2):  # on a loaded machine Ray's node startup can time out once
        started = LocalCluster.start(head_cpus=1, dashboard=True)
        try:
            running = started.__enter__()
            break
        except RuntimeError:  # the failed start is torn down already
            if attempt:
                raise
    try:
        yield running
    finally:
        started.__exit__(None, None, None)
    assert not running.pids(), "cluster processes survived teardown"


def _greentune(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _project(root: Path, out: Path, **changes) -> Path:
    """A user's folder: the study, its objective, and what must never leave the laptop."""
    root.mkdir(parents=True)
    (root / "job_objective.py").write_text(_OBJECTIVE)
    (root / ".env").write_text("MLFLOW_TRACKING_PASSWORD=hunter2\n")
    (root / "greentune-runs" / "old").mkdir(parents=True)
    (root / "greentune-runs" / "old" / "ledger.json").write_text("{}")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "mlflow.db").write_bytes(b"SQLite format 3\x00")
    study = {"name": "submitted", "objective": "job_objective:objective", "metric": "accuracy",
             "budget_kwh": 1.0, "strategy": "random", "seed": 0, "max_trials": 3, "max_concurrent_trials": 1,
             "resources_per_trial": {"cpu": 1}, "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
             "output_dir": str(out), **changes}
    (root / "study.yaml").write_text(yaml.safe_dump(study))
    return root / "study.yaml"


def test_submit_runs_the_study_on_the_cluster_and_status_follows_it_to_the_end(head, tmp_path):
    out = tmp_path / "out"
    project = _project(tmp_path / "project", out).parent
    submitted = _greentune("submit", "study.yaml", "--address", head.dashboard_url, cwd=project)
    assert submitted.returncode == 0, submitted.stderr
    job_id = re.search(r"as job (\S+) ", submitted.stdout)[1]
    assert f"greentune status {job_id} --address {head.dashboard_url} --follow" in submitted.stdout

    followed = _greentune("status", job_id, "--address", head.dashboard_url, "--follow", cwd=tmp_path)
    assert followed.returncode == 0, followed.stdout[-3000:] + followed.stderr[-3000:]
    assert "[greentune] trials:" in followed.stdout  # the driver's log, tailed
    last = followed.stdout.strip().splitlines()[-1]
    assert last.startswith(f"job {job_id}: SUCCEEDED | trials: 3 done, 0 running, 0 failed | energy ")
    assert "kWh" in last and "stopped because: max_trials reached" in last

    shown = _greentune("status", job_id, "--address", head.dashboard_url, cwd=tmp_path)
    assert shown.returncode == 0 and shown.stdout.strip() == last

    trials = read_trials_csv(out / "trials.csv")
    assert len(trials) == 3 and (trials["status"] == "completed").all()
    assert (trials["has_study"] == 1).all()  # the working dir was shipped ...
    for kept_home in ("has_env", "has_runs", "has_git", "has_db"):  # ... without what must stay home
        assert (trials[kept_home] == 0).all(), kept_home
    kwh = float(re.search(r"energy (\S+) of", last)[1])
    # the closing summary's total: the trials' energy and the tuner's own overhead (which
    # dominates for an objective this trivial, so the trials' sum alone is no check)
    state = json.loads((out / "study.json").read_text())
    assert state["total_energy_kwh"] == pytest.approx(trials["energy_kwh"].sum() + state["overhead_kwh"])
    assert kwh == pytest.approx(float(f"{state['total_energy_kwh']:.3g}"))


def test_a_bad_study_is_refused_here_before_anything_is_submitted(head, tmp_path, monkeypatch, capsys):
    from ray.job_submission import JobSubmissionClient

    from tuner.cli import main

    def greentune(*args: str) -> tuple[int, str]:  # in this process: the checks need no subprocess
        code = main(list(args))
        return code, capsys.readouterr().err

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    client = JobSubmissionClient(head.dashboard_url)
    before = {job.submission_id for job in client.list_jobs()}
    project = _project(tmp_path / "project", tmp_path / "out", budget_kwh=-1).parent
    monkeypatch.chdir(project)
    code, err = greentune("submit", "study.yaml", "--address", head.dashboard_url)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("greentune: ") and "budget_kwh" in err

    code, err = greentune("submit", str(project / "study.yaml"), "--address", head.dashboard_url,
                          "--working-dir", str(project / "greentune-runs"))
    assert code == 2 and "outside the working directory" in err

    monkeypatch.chdir(_project(tmp_path / "good", tmp_path / "out").parent)
    code, err = greentune("submit", "study.yaml", "--address", f"http://127.0.0.1:{free_port()}")
    assert code == 2 and err.count("\n") == 1 and "no Ray job server" in err, err
    assert {job.submission_id for job in client.list_jobs()} == before  # nothing reached the cluster

    code, err = greentune("status", "greentune-nosuchjob", "--address", head.dashboard_url)
    assert code == 2 and "no job 'greentune-nosuchjob'" in err


def test_status_of_a_failed_job_names_what_failed_and_a_summary_gives_the_final_kwh():
    from tuner.jobs import exit_code, parse_progress

    logs = ("Running entrypoint for job j: greentune run study.yaml\nTraceback (most recent call last):\n"
            "  File \"x\", line 5\nModuleNotFoundError: No module named 'tuner'\n")
    failed = parse_progress("j", "FAILED", "Job entrypoint command failed with exit code 1, last logs:\n...", logs)
    assert failed.line() == ("job j: FAILED (Job entrypoint command failed with exit code 1, last logs:) | "
                             "no trial booked yet | ModuleNotFoundError: No module named 'tuner'")
    assert exit_code(failed) == 1
    logs = ("[greentune] trials: 2 done, 1 running, 0 queued, 1 failed | energy 0.5 / 1 kWh (50%) | Pareto front: 1\n"
            "greentune: warning: something\ntrials: 4 (2 completed, 1 failed, 1 stopped_by_budget)\n"
            "energy: 0.98 kWh of 1 kWh budget (trials 0.9, tuner overhead 0.08)\nstopped because: energy budget spent\n")
    done = parse_progress("j", "SUCCEEDED", "", logs)
    assert done.line() == ("job j: SUCCEEDED | trials: 2 done, 0 running, 1 failed | energy 0.98 of 1 kWh (98%) | "
                           "stopped because: energy budget spent")
