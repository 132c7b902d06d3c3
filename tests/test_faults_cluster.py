"""A Ray worker node stopped mid-study, on a real two-node cluster (``tests/local_cluster.py``).

The study runs in a subprocess (the CLI), so this test process never connects to the
cluster and the session's local ``ray_session`` stays untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.local_cluster import LocalCluster, WorkerSpec, _kill_sessions
from tuner.study.files import read_trials_csv

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]


def _wait_for(predicate, what: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def test_worker_node_stopped_mid_study_fails_its_trial_and_keeps_the_rest(tmp_path: Path):
    control = tmp_path / "control"
    control.mkdir()
    out = tmp_path / "out"
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({
        "name": "node-loss", "objective": "tests.fault_objectives:on_a_node", "metric": "accuracy",
        "budget_kwh": 1.0, "strategy": "random", "seed": 0, "max_trials": 4, "max_concurrent_trials": 2,
        "resources_per_trial": {"cpu": 1},
        "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}, "control": str(control)},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}, "output_dir": str(out),
    }))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    worker = WorkerSpec(num_cpus=1, env={"GREENTUNE_TEST_NODE": "worker"})
    with LocalCluster.start(head_cpus=1, head_env={"GREENTUNE_TEST_NODE": "head"}, workers=[worker]) as cluster:
        driver = subprocess.Popen(
            [sys.executable, "-m", "tuner.cli", "run", str(study), "--address", cluster.address, "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        try:
            # Both first trials run, one per node; the worker's has reported its energy twice.
            _wait_for(lambda: (control / "ticket-1").exists(), "two trials did not start")
            tickets = {int(p.name.split("-")[1]): p.read_text() for p in control.glob("ticket-*")}
            (on_worker,) = [n for n, node in tickets.items() if node == "worker"]
            _wait_for(lambda: (control / f"reported-{on_worker}").exists(), "no report from the worker")
            _kill_sessions({cluster.sessions[1]})  # the worker node: raylet, its workers, all
            for n in range(20):
                (control / f"release-{n}").touch()
            stdout, stderr = driver.communicate(timeout=300)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    assert driver.returncode == 0, stderr[-4000:]
    trials = read_trials_csv(out / "trials.csv")
    assert len(trials) == 4
    failed = trials[trials["status"] == "failed"]
    assert len(failed) == 1 and (trials["status"] != "failed").sum() == 3
    assert (trials[trials["status"] != "failed"]["status"] == "completed").all()
    lost = failed.iloc[0]
    done = trials[trials["status"] == "completed"]
    assert done["hw_node_id"].nunique() == 1  # the rest ran on the head
    assert lost["hw_node_id"] != done["hw_node_id"].iloc[0]  # its last heartbeat named the lost node
    assert isinstance(lost["error"], str) and lost["error"]
    assert (done["energy_kwh"] > 0).all()  # finished trials' energy kept
    # Its energy to the last heartbeat is counted, as Ray logged it in the driver.
    (log,) = (out / "ray").glob(f"*{lost['trial_id']}*/result.json")
    heard = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert lost["energy_kwh"] > 0 and lost["energy_kwh"] == pytest.approx(heard[-1]["energy_kwh"])
    state = json.loads((out / "study.json").read_text())
    assert state["total_energy_kwh"] == pytest.approx(trials["energy_kwh"].sum() + state["overhead_kwh"])
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    children = client.search_runs([client.get_run(state["mlflow_run_id"]).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{state['mlflow_run_id']}'")
    by_trial = {c.data.tags["greentune.trial_id"]: c for c in children}
    assert by_trial[lost["trial_id"]].info.status == "FAILED"
    assert by_trial[lost["trial_id"]].data.metrics["energy_kwh"] == pytest.approx(lost["energy_kwh"])
