"""A study's files in its MLflow run: a driver killed with its machine, resumed elsewhere from MLflow alone.

A real ``mlflow server`` on 127.0.0.1 (SQLite backend, proxied artifacts) is the durable
store; the study's output directory is deleted outright after its driver is SIGKILLed,
as a lost head node would lose it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.local_cluster import MlflowServer, free_port
from tuner.study.files import read_trials_csv
from tuner.tracking.sync import SYNC_DIR, SYNC_TAG, StudySync, pull_study

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
GRID_POINTS = 4
# the driver under test copies its files every second (the default is SYNC_EVERY_S = 10)
_DRIVER = ("import sys, tuner.tracking.sync as s; s.SYNC_EVERY_S = 1.0; from tuner.cli import main; "
           "sys.exit(main(sys.argv[1:]))")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    with MlflowServer.start(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


def _study(tmp_path: Path, uri: str) -> Path:
    study = tmp_path / "study.yaml"
    study.write_text(
        "name: moved\n"
        "objective: tests.objectives_for_tests:ticking\n"
        "strategy: grid\n"
        f"grid_resolution: {GRID_POINTS}\n"
        "budget_kwh: 1.0\n"
        "max_concurrent_trials: 2\n"
        "seed: 0\n"
        f"output_dir: {tmp_path / 'out'}\n"
        f"mlflow: {{tracking_uri: '{uri}'}}\n"
        "energy: {report_interval_s: 0.5}\n"
        "search_space:\n"
        "  x: {type: float, low: 0.0, high: 1.0}\n"
        "  seconds: 1.5\n"
        f"  marks: {tmp_path / 'marks.txt'}\n"
    )
    return study


def _greentune(*args: str, address: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-c", _DRIVER, "run", *args, "--address", address, "--quiet"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _synced_ledger(uri: str, run_id: str, scratch: Path) -> dict:
    """The ledger as MLflow holds it now (what a new machine would get)."""
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        pull_study(uri, run_id, scratch)
        return json.loads((scratch / "ledger.json").read_text())
    except Exception:  # noqa: BLE001 - not synced yet
        return {"entries": []}


def test_a_killed_study_resumes_on_a_new_machine_from_its_mlflow_run_alone(ray_session, mlflow_server, tmp_path):
    address = ray_session.get_runtime_context().gcs_address
    uri, out = mlflow_server.uri, tmp_path / "out"
    study = _study(tmp_path, uri)
    first = _greentune(str(study), address=address, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while not (out / "study.json").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
            time.sleep(0.2)
        run_id = json.loads((out / "study.json").read_text())["mlflow_run_id"]
        while True:  # until MLflow's copy holds two completed trials
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
            synced = _synced_ledger(uri, run_id, tmp_path / "peek")
            if sum(e["status"] == "completed" for e in synced["entries"]) >= 2:
                break
            time.sleep(0.3)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    shutil.rmtree(out)  # the head node is gone, and its disk with it
    synced = _synced_ledger(uri, run_id, tmp_path / "peek")  # the last copy the dead driver made
    done_before = {e["trial_id"]: e for e in synced["entries"] if e["status"] == "completed"}
    assert len(done_before) >= 2

    second = _greentune(str(study), "--resume", address=address, cwd=tmp_path)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    assert f"restored the study's files into {out} from MLflow run {run_id}" in output

    trials = read_trials_csv(out / "trials.csv").set_index("trial_id")
    state = json.loads((out / "study.json").read_text())
    assert state["resumes"] == 1 and state["mlflow_run_id"] == run_id
    # what MLflow's copy held as completed is kept as it was, and not run again
    starts = Counter(float(line) for line in (tmp_path / "marks.txt").read_text().split())
    for trial_id, entry in done_before.items():
        assert trials.loc[trial_id, "status"] == "completed"
        assert trials.loc[trial_id, "energy_kwh"] == pytest.approx(entry["energy_kwh"], rel=1e-12)
        assert starts[round(entry["params"]["x"], 6)] == 1
    # the grid is finished, each point completed once in the books
    completed = trials[trials["status"] == "completed"]
    assert len(completed) == GRID_POINTS and completed["x"].round(6).nunique() == GRID_POINTS
    # the books add up: every trial's energy once, plus both drivers' overhead
    assert state["total_energy_kwh"] == pytest.approx(trials["energy_kwh"].sum() + state["overhead_kwh"], rel=1e-9)
    assert state["overhead_kwh"] >= synced["overhead_kwh"]
    # MLflow: the same parent, finished; every booked trial has one child run; a trial that ended
    # after the dead driver's last copy is tagged, not silently counted
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(run_id)
    assert parent.info.status == "FINISHED" and SYNC_TAG in parent.data.tags
    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    booked = [r for r in children if "greentune.unbooked" not in r.data.tags]
    per_trial = Counter(r.data.tags["greentune.trial_id"] for r in booked)
    assert set(per_trial) == set(trials.index) and max(per_trial.values()) == 1
    assert all(r.data.tags["greentune.trial_id"] not in trials.index
               for r in children if "greentune.unbooked" in r.data.tags)
    # the final copy in MLflow is the final ledger
    final = _synced_ledger(uri, run_id, tmp_path / "final")
    assert final == json.loads((out / "ledger.json").read_text())


def _run_with_files(uri: str, directory: Path) -> str:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("greentune-unit") or None
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("greentune-unit")
    run_id = client.create_run(experiment_id, run_name="unit", tags={"greentune.kind": "study"}).info.run_id
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "study.json").write_text(json.dumps({"name": "unit", "mlflow_run_id": run_id}))
    (directory / "ledger.json").write_text(json.dumps({"entries": [{"trial_id": "a"}], "overhead_kwh": 0.0}))
    (directory / "trials.csv").write_text("trial_id,status\na,completed\n")
    return run_id


def test_a_pull_keeps_a_newer_local_ledger_and_fills_in_the_rest(mlflow_server, tmp_path, capsys):
    from tuner.cli import main

    uri = mlflow_server.uri
    run_id = _run_with_files(uri, tmp_path / "first")
    assert StudySync(uri, run_id, tmp_path / "first").push()
    names = {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(run_id, SYNC_DIR)}
    assert names == {f"{SYNC_DIR}/study.json", f"{SYNC_DIR}/ledger.json", f"{SYNC_DIR}/trials.csv"}

    here = tmp_path / "here"
    here.mkdir()
    newer = json.dumps({"entries": [{"trial_id": "a"}, {"trial_id": "b"}], "overhead_kwh": 0.1})
    (here / "ledger.json").write_text(newer)
    assert main(["pull", run_id, "--output-dir", str(here), "--tracking-uri", uri]) == 0
    assert "kept the local ledger.json" in capsys.readouterr().out
    assert (here / "ledger.json").read_text() == newer  # never replaced by the older copy
    assert json.loads((here / "study.json").read_text())["mlflow_run_id"] == run_id
    assert (here / "trials.csv").read_text() == "trial_id,status\na,completed\n"

    # by the study's name, and a name MLflow does not know: one line, exit 2
    assert main(["pull", "nosuchstudy", "--output-dir", str(tmp_path / "none"), "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no synced study named 'nosuchstudy'" in err
    assert not (tmp_path / "none").exists()


def test_a_failed_copy_is_one_warning_and_never_an_error(tmp_path, caplog):
    directory = tmp_path / "study"
    directory.mkdir()
    (directory / "ledger.json").write_text("{}")
    sync = StudySync(f"http://127.0.0.1:{free_port()}", "0" * 32, directory, every_s=0.0)
    with caplog.at_level(logging.WARNING, logger="tuner"):
        assert sync.push() is False
        assert sync.push() is False
    warned = [r for r in caplog.records if "could not copy the study's files" in r.getMessage()]
    assert len(warned) == 1  # once per outage
    assert (directory / "ledger.json").read_text() == "{}"  # the local books untouched
    assert sync.maybe_push() is False  # backed off: not retried at once


def test_nothing_is_synced_when_the_mlflow_store_is_inside_the_output_dir(tmp_path):
    out = tmp_path / "out"
    assert not StudySync(f"sqlite:///{out / 'mlflow.db'}", "0" * 32, out).enabled
    assert StudySync(f"sqlite:///{tmp_path / 'elsewhere.db'}", "0" * 32, out).enabled


def test_resume_with_no_study_and_no_mlflow_copy_is_one_clear_refusal(mlflow_server, tmp_path):
    import tuner
    from tuner.config import ConfigError

    config = {"name": "nowhere", "objective": "tests.objectives_for_tests:quadratic", "budget_kwh": 1.0,
              "output_dir": tmp_path / "out", "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    for uri, why in ((mlflow_server.uri, "no synced study named 'nowhere'"),
                     (f"http://127.0.0.1:{free_port()}", "could not be asked for a copy")):
        with pytest.raises(ConfigError, match="nothing to resume") as refused:
            tuner.tune({**config, "mlflow": {"tracking_uri": uri}}, resume=True, progress=False)
        assert why in str(refused.value)
    assert not (tmp_path / "out").exists()


def test_a_trial_that_ended_after_the_last_copy_is_tagged_and_named_not_counted(mlflow_server, tmp_path, caplog):
    from tuner.tracking.sync import restore_study

    uri = mlflow_server.uri
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("greentune-late")
    run_id = client.create_run(experiment_id, run_name="late", tags={"greentune.kind": "study"}).info.run_id
    first = tmp_path / "first"
    first.mkdir()
    (first / "study.json").write_text(json.dumps({"name": "late", "mlflow_run_id": run_id}))
    (first / "ledger.json").write_text(json.dumps({"entries": [{"trial_id": "a"}], "overhead_kwh": 0.0}))
    assert StudySync(uri, run_id, first).push()
    children = {}
    for trial_id, kwh in (("a", 0.25), ("b", 0.5)):  # b ended after the copy: the dead driver logged it only
        child = client.create_run(experiment_id, tags={"mlflow.parentRunId": run_id, "greentune.trial_id": trial_id})
        client.log_metric(child.info.run_id, "energy_kwh", kwh)
        children[trial_id] = child.info.run_id

    with caplog.at_level(logging.WARNING, logger="tuner"):
        assert restore_study(uri, "late", tmp_path / "new") == run_id
    assert "greentune.unbooked" in client.get_run(children["b"]).data.tags
    assert "greentune.unbooked" not in client.get_run(children["a"]).data.tags
    assert "1 trial run(s)" in caplog.text and "0.5 kWh" in caplog.text
    assert json.loads((tmp_path / "new" / "ledger.json").read_text())["entries"] == [{"trial_id": "a"}]
