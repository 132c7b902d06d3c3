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

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.fakes.fake_pynvml import NODE_GPUS, node_fleet
from tests.local_cluster import LocalCluster, MlflowServer, WorkerSpec
from tuner.study.files import read_trials_csv

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[1]
HEAD_MARKER, WORKER_MARKER = 1.0, 2.0


@pytest.fixture(scope="module")
def fake_gpus(tmp_path_factory) -> Path:
    """The worker node's fake GPUs' shared state (power limits, log of set calls)."""
    return tmp_path_factory.mktemp("fake-gpus")


@pytest.fixture(scope="module")
def cluster(fake_gpus: Path):
    # The worker declares two GPUs, which its pynvml (tests/fakes/nvml_node) fakes. Its
    # CUDA_VISIBLE_DEVICES lists them by UUID in the reverse of NVML's index order, so a
    # meter that took Ray's GPU IDs for NVML indices would read the wrong device.
    gpu_env = {
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "fakes" / "nvml_node"), str(REPO)]),
        "GREENTUNE_FAKE_NVML_STATE": str(fake_gpus),
        "CUDA_VISIBLE_DEVICES": ",".join(uuid for uuid, _ in reversed(NODE_GPUS)),
    }
    worker = WorkerSpec(num_cpus=1, num_gpus=2, resources={"greentune_side": 1}, labels={"zone": "side"},
                        env={"GREENTUNE_TEST_NODE": str(int(WORKER_MARKER)), **gpu_env})
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


def _study(path: Path, name: str, tracking_uri: str, objective: str, trials: int, **extra) -> Path:
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
        **extra,
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
    # a new process per trial, so that Ray places each anew: reused processes would keep
    # all four trials where the first two ran (2 slots, 2 at a time)
    study = _study(tmp_path / "study.yaml", "cluster", mlflow_server.uri,
                   "tests.objectives_for_tests:node_marker", trials=4, reuse_trial_processes=False)
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

    trials = read_trials_csv(tmp_path / "out" / "trials.csv")
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


@pytest.mark.slow
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
    trials = read_trials_csv(out / "trials.csv")
    assert len(trials) == 2 and (trials["status"] == "completed").all()
    assert set(trials["hw_node_id"]) <= {n["node_id"] for n in _nodes(cluster)}
    assert len(_server_trials(mlflow_server.uri, out)) == 2


def _run_cli(study: Path, cluster: LocalCluster) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuner.cli", "run", str(study), "--address", cluster.address, "--quiet"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240,
    )


@pytest.mark.slow
def test_whole_gpus_are_exclusive_metered_by_uuid_and_power_limited_then_restored(
    cluster, mlflow_server, fake_gpus: Path, tmp_path: Path
):
    limits = [150, 250]
    study = _study(tmp_path / "study.yaml", "gpus", mlflow_server.uri, "tests.objectives_for_tests:gpu_probe",
                   trials=4, resources_per_trial={"cpu": 0, "gpu": 1},
                   search_space={"x": {"type": "float", "low": 0.0, "high": 1.0},
                                 "gpu_power_limit_w": {"type": "choice", "values": limits}})
    done = _run_cli(study, cluster)
    assert done.returncode == 0, done.stderr[-4000:]

    fleet = node_fleet(fake_gpus)
    trials = read_trials_csv(tmp_path / "out" / "trials.csv")
    assert len(trials) == 4 and (trials["status"] == "completed").all()
    for _, trial in trials.iterrows():
        device = fleet.devices[int(trial["nvml_index"])]
        assert trial["n_visible_gpus"] == 1
        assert trial["limit_seen_w"] == trial["gpu_power_limit_w"]  # set before the objective ran
        assert trial["hw_gpu_names"] == device.name  # the meter read the trial's own GPU only
        assert trial["energy_source_gpu"] == "nvml-energy-counter"
        watts = trial["energy_gpu_kwh"] * 3.6e6 / trial["duration_s"]
        assert 0.5 * device.trace.mean < watts < 1.5 * device.trace.mean
    for uuid, _ in NODE_GPUS:
        log = [mw for _, mw in fleet.limit_log(uuid)]
        default = fleet.devices[0].default_limit_mw
        # Every limit set on a GPU is restored before the next one: no two trials shared it.
        assert all(after == default for before, after in zip(log, log[1:], strict=False) if before != default), log
        assert not log or log[-1] == default
    applied = sorted(mw for uuid, _ in NODE_GPUS for mw in (m for _, m in fleet.limit_log(uuid)) if mw != 400_000)
    assert applied == sorted(1000 * trials["gpu_power_limit_w"].astype(int))


def test_power_limit_without_privileges_fails_before_any_trial(cluster, mlflow_server, fake_gpus: Path, tmp_path):
    (fake_gpus / "unprivileged").touch()
    try:
        study = _study(tmp_path / "study.yaml", "unprivileged", mlflow_server.uri,
                       "tests.objectives_for_tests:gpu_probe", trials=2, resources_per_trial={"cpu": 0, "gpu": 1},
                       search_space={"x": {"type": "float", "low": 0.0, "high": 1.0},
                                     "gpu_power_limit_w": {"type": "float", "low": 150, "high": 250}})
        before = {uuid: node_fleet(fake_gpus).limit_log(uuid) for uuid, _ in NODE_GPUS}
        done = _run_cli(study, cluster)
    finally:
        (fake_gpus / "unprivileged").unlink()
    assert done.returncode == 2
    assert "needs root" in done.stderr and "gpu_power_limit_w" in done.stderr
    assert not (tmp_path / "out").exists()  # no study, no trial
    assert {uuid: node_fleet(fake_gpus).limit_log(uuid) for uuid, _ in NODE_GPUS} == before


def test_fractional_gpu_trials_are_tagged_shared(cluster, mlflow_server, tmp_path: Path):
    study = _study(tmp_path / "study.yaml", "halves", mlflow_server.uri, "tests.objectives_for_tests:gpu_probe",
                   trials=2, resources_per_trial={"cpu": 0, "gpu": 0.5})
    done = _run_cli(study, cluster)
    assert done.returncode == 0, done.stderr[-4000:]
    trials = read_trials_csv(tmp_path / "out" / "trials.csv")
    assert (trials["status"] == "completed").all()
    # The fake GPUs report no per-process utilisation, so the share cannot be split off.
    assert trials["energy_flags"].str.contains("gpu:shared-device").all()
    assert trials["hw_gpu_names"].str.startswith("Fake GPU").all()
