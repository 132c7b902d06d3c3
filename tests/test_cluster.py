"""Studies on a real two-node Ray cluster, logged to a real MLflow server; and Ray Jobs.

The cluster (``ray start --head`` + ``ray start --address``) and ``mlflow server`` are
started once for this module and torn down by the fixtures even when a test fails.
Studies run in subprocesses (the CLI, and ``ray job submit``): this test process never
connects to the cluster, so the session's local ``ray_session`` stays untouched for
the other test modules whatever order they run in.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.local_cluster import LocalCluster, MlflowServer, WorkerSpec

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[1]
HEAD_MARKER, WORKER_MARKER = 1.0, 2.0


@pytest.fixture(scope="module")
def cluster():
    worker = WorkerSpec(num_cpus=1, resources={"greentune_side": 1}, labels={"zone": "side"},
                        env={"GREENTUNE_TEST_NODE": str(int(WORKER_MARKER))})
    with LocalCluster.start(head_cpus=1, head_env={"GREENTUNE_TEST_NODE": str(int(HEAD_MARKER))},
                            workers=[worker], dashboard=True) as running:
        yield running
    assert not running.pids(), "cluster processes survived teardown"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    with MlflowServer.start(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


def _nodes(cluster: LocalCluster) -> list[dict]:
    """The cluster's nodes, from Ray's state API on the dashboard (what `ray list nodes` reads)."""
    with urllib.request.urlopen(f"{cluster.dashboard_url}/api/v0/nodes?detail=1", timeout=30) as resp:
        return json.load(resp)["data"]["result"]["result"]


def _study(path: Path, name: str, tracking_uri: str, objective: str, trials: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "name": name,
        "objective": objective,
        "metric": "accuracy",
        "budget_kwh": 1.0,
        "strategy": "random",
        "seed": 0,
        "max_trials": trials,
        "max_concurrent_trials": 2,
        "resources_per_trial": {"cpu": 1},
        "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "mlflow": {"tracking_uri": tracking_uri},
        "output_dir": str(path.parent / "out"),
    }))
    return path


def _env() -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    return env


def _server_trials(tracking_uri: str, study_dir: Path) -> list:
    """The trial child runs of the study in ``study_dir``, as the MLflow server has them."""
    run_id = json.loads((study_dir / "study.json").read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.get_run(run_id)
    return client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{run_id}'")


def test_study_spreads_over_nodes_measures_each_on_its_node_and_logs_to_the_server(
    cluster, mlflow_server, tmp_path: Path
):
    study = _study(tmp_path / "study.yaml", "cluster", mlflow_server.uri,
                   "tests.objectives_for_tests:node_marker", trials=4)
    done = subprocess.run(
        [sys.executable, "-m", "tuner.cli", "run", str(study), "--address", cluster.address, "--quiet"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    nodes = {n["node_id"]: n for n in _nodes(cluster)}
    assert len(nodes) == 2
    worker_id = next(i for i, n in nodes.items() if n["resources_total"].get("greentune_side"))
    head_id = next(i for i in nodes if i != worker_id)
    assert nodes[worker_id]["labels"].get("zone") == "side"
    expected_node = {HEAD_MARKER: head_id, WORKER_MARKER: worker_id}

    trials = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert len(trials) == 4 and (trials["status"] == "completed").all()
    assert trials["hw_node_id"].nunique() == 2, trials[["trial_id", "hw_node_id"]]
    for _, trial in trials.iterrows():
        # The node's own environment (inherited from its `ray start`) names where the
        # objective ran; the meter's tags, taken in the trial process, must agree.
        assert trial["hw_node_id"] == expected_node[trial["node_marker"]]
        assert trial["hw_node_ip"] == nodes[trial["hw_node_id"]]["node_ip"]
        assert trial["hw_node"] == socket.gethostname()
        assert trial["energy_kwh"] > 0 and trial["energy_source"] == "cpu-time-estimate"

    runs = _server_trials(mlflow_server.uri, tmp_path / "out")
    by_trial = {r.data.tags["greentune.trial_id"]: r for r in runs}
    assert set(by_trial) == set(trials["trial_id"])
    for _, trial in trials.iterrows():
        run = by_trial[trial["trial_id"]]
        assert run.info.status == "FINISHED"
        assert run.data.tags["hw_node_id"] == trial["hw_node_id"]
        assert run.data.metrics["energy_kwh"] == pytest.approx(trial["energy_kwh"])


def test_ray_job_submit_runs_greentune_on_the_cluster(cluster, mlflow_server, tmp_path: Path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    # The user's objective travels in the job's working directory, as in the README.
    (job_dir / "job_objective.py").write_text(
        "import os\n\n\ndef objective(params):\n"
        "    return {'accuracy': params['x'], 'node_marker': float(os.environ.get('GREENTUNE_TEST_NODE', '0'))}\n"
    )
    _study(job_dir / "study.yaml", "job", mlflow_server.uri, "job_objective:objective", trials=2)
    out = job_dir / "out"
    ray = Path(sys.executable).with_name("ray")
    done = subprocess.run(
        [str(ray), "job", "submit", "--address", cluster.dashboard_url, "--working-dir", str(job_dir),
         "--", "greentune", "run", "study.yaml", "--quiet"],
        cwd=job_dir, env=_env(), capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "succeeded" in done.stdout, done.stdout[-4000:]

    state = json.loads((out / "study.json").read_text())
    assert state["finished_at"] > state["started_at"]
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 2 and (trials["status"] == "completed").all()
    assert set(trials["hw_node_id"]) <= {n["node_id"] for n in _nodes(cluster)}
    assert len(_server_trials(mlflow_server.uri, out)) == 2
