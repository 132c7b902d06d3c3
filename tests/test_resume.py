"""Resume after the driver is killed with SIGKILL mid-study: nothing rerun, nothing lost, nothing counted twice."""

from __future__ import annotations

import json
import math
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

from tuner.search.base import Outcome
from tuner.study.files import read_trials_csv

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
GRID_POINTS = 4


def _study(tmp_path: Path) -> Path:
    study = tmp_path / "study.yaml"
    study.write_text(
        "name: killed\n"
        "objective: tests.objectives_for_tests:ticking\n"
        "strategy: grid\n"
        f"grid_resolution: {GRID_POINTS}\n"
        "budget_kwh: 1.0\n"
        "max_concurrent_trials: 2\n"
        "seed: 0\n"
        f"output_dir: {tmp_path / 'out'}\n"
        "energy: {report_interval_s: 0.5}\n"
        "search_space:\n"
        "  x: {type: float, low: 0.0, high: 1.0}\n"
        "  seconds: 1.5\n"
        f"  marks: {tmp_path / 'marks.txt'}\n"
    )
    return study


def _small_study(tmp_path: Path) -> Path:
    """Three quick grid points: enough to have books on disk and a report to write."""
    study = _study(tmp_path)
    study.write_text(study.read_text().replace(f"grid_resolution: {GRID_POINTS}", "grid_resolution: 3")
                     .replace("seconds: 1.5", "seconds: 0.75"))
    return study


def _greentune(*args: str, address: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    return subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "run", *args, "--address", address, "--quiet"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _ledger(out: Path) -> dict:
    try:
        return json.loads((out / "ledger.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"entries": []}


def _wait_for_flight(out: Path, proc: subprocess.Popen, timeout_s: float = 180.0) -> None:
    """Until the books on disk hold two completed trials and one running that has spent energy."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        entries = _ledger(out)["entries"]
        done = [e for e in entries if e["status"] == "completed"]
        flying = [e for e in entries if e["status"] == "running" and e["energy_kwh"] > 0]
        if len(done) >= 2 and flying:
            return
        time.sleep(0.1)
    raise AssertionError("the study never had two completed trials and one in flight")


def test_sigkilled_driver_resumes_with_books_straight(ray_session, tmp_path: Path):
    address = ray_session.get_runtime_context().gcs_address
    study, out = _study(tmp_path), tmp_path / "out"
    first = _greentune(str(study), address=address, cwd=tmp_path)
    try:
        _wait_for_flight(out, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    state_before = json.loads((out / "study.json").read_text())
    books = {e["trial_id"]: e for e in _ledger(out)["entries"]}  # exactly what the dead driver left
    done_before = {t: e for t, e in books.items() if e["status"] == "completed"}
    flying_before = {t: e for t, e in books.items() if e["status"] in ("running", "pending")}
    spent_before = sum(e["energy_kwh"] for e in books.values())
    assert len(done_before) >= 2 and any(e["energy_kwh"] > 0 for e in flying_before.values())

    second = _greentune(str(study), "--resume", address=address, cwd=tmp_path)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output

    trials = read_trials_csv(out / "trials.csv").set_index("trial_id")
    state = json.loads((out / "study.json").read_text())
    # completed trials are kept as they were and not rerun: every x started once, unless interrupted
    for trial_id, entry in done_before.items():
        assert trials.loc[trial_id, "status"] == "completed"
        assert trials.loc[trial_id, "energy_kwh"] == pytest.approx(entry["energy_kwh"], rel=1e-12)
    starts = Counter(float(line) for line in (tmp_path / "marks.txt").read_text().split())
    for entry in done_before.values():
        assert starts[round(entry["params"]["x"], 6)] == 1
    # the trials in flight were ended by Ray (it ends a dead driver's workers on a running cluster) or by
    # their own watch on the driver; what they spent after the dead driver's last save, and a result that
    # came after it, are booked from their spooled last word: never less than the dead driver's books
    for trial_id, entry in flying_before.items():
        assert trials.loc[trial_id, "status"] in ("interrupted", "completed")
        assert trials.loc[trial_id, "energy_kwh"] >= entry["energy_kwh"]
    assert not (out / "inflight").exists()  # booked, then dropped
    # the grid is finished: each point completed exactly once across both drivers
    completed = trials[trials["status"] == "completed"]
    assert len(completed) == GRID_POINTS
    assert completed["x"].round(6).nunique() == GRID_POINTS
    # the budget saw every kWh once: all trials of both drivers plus both drivers' overhead
    assert state["total_energy_kwh"] == pytest.approx(trials["energy_kwh"].sum() + state["overhead_kwh"], rel=1e-9)
    assert trials["energy_kwh"].sum() >= spent_before
    assert state["overhead_kwh"] >= _ledger(out)["overhead_kwh"] * 0  # never negative
    assert state["resumes"] == 1 and state["mlflow_run_id"] == state_before["mlflow_run_id"]
    # one MLflow parent run, reused; one child per trial, none twice
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    parent = client.get_run(state["mlflow_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["greentune.resumes"] == "1"
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    # a trial that started after the dead driver's last save and was ended before its first heartbeat is
    # in no books: its run is ended and tagged, not left RUNNING
    unbooked = [run for run in children if "greentune.unbooked" in run.data.tags]
    assert all(run.info.status == "KILLED" and run.data.tags["greentune.trial_id"] not in trials.index
               for run in unbooked)
    children = [run for run in children if run not in unbooked]
    child_ids = Counter(run.data.tags["greentune.trial_id"] for run in children)
    assert set(child_ids) == set(trials.index) and max(child_ids.values()) == 1
    for run in children:
        trial = trials.loc[run.data.tags["greentune.trial_id"]]
        assert run.data.metrics["energy_kwh"] == pytest.approx(trial["energy_kwh"], rel=1e-9)


def test_resume_refuses_a_changed_search_space_and_a_missing_study(tmp_path: Path):
    import tuner
    from tuner.config import ConfigError

    out = tmp_path / "out"
    config = {"objective": "tests.objectives_for_tests:quadratic", "budget_kwh": 1.0, "output_dir": out,
              "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    with pytest.raises(ConfigError, match="nothing to resume"):
        tuner.tune(config, resume=True, progress=False)
    out.mkdir()
    (out / "study.json").write_text(json.dumps({"name": "s", "mlflow_run_id": "x", "config": {
        "objective": "tests.objectives_for_tests:quadratic",
        "search_space": {"x": {"type": "float", "low": 0.0, "high": 2.0, "log": False}}}}))
    with pytest.raises(ConfigError, match="config changed in search_space"):
        tuner.tune(config, resume=True, progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        tuner.tune(config, progress=False)


def test_ax_state_is_restored_and_reconciled_with_the_ledger(tmp_path: Path):
    """Ax's snapshot lags the ledger by one result and holds a running trial: both are put right."""
    from tuner.config import FloatRange, IntRange
    from tuner.search.ax_searcher import AxSearcher

    space = {"lr": FloatRange(type="float", low=1e-4, high=1e-1, log=True), "ep": IntRange(type="int", low=1, high=20)}
    first = AxSearcher(space, seed=0, initial_trials=3)
    history: list[tuple[dict, Outcome]] = []
    for i in range(4):
        params = first.ask()
        outcome = Outcome("completed", i / 10, 1e-4 * (i + 1))
        first.tell(params, outcome)
        history.append((params, outcome))
    first.save_state(tmp_path / "searcher.json")
    late = first.ask()  # finished after the snapshot: the ledger has it, Ax's snapshot does not
    history.append((late, Outcome("completed", 0.9, 2e-4)))
    flying = first.ask()  # interrupted by the driver's death
    history.append((flying, Outcome("stopped")))
    first.save_state(tmp_path / "later.json")  # unused: proves save_state leaves no temp file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["later.json", "searcher.json"]

    second = AxSearcher(space, seed=0, initial_trials=3)
    second.resume(history, tmp_path / "searcher.json")
    trials = second.client._experiment.trials  # noqa: SLF001
    completed = [t for t in trials.values() if t.status.is_completed]
    assert len(completed) == 5
    assert all(t.status.is_terminal for t in trials.values())  # nothing left pending forever
    data = second.client._experiment.lookup_data().df  # noqa: SLF001
    lrs = data[data["metric_name"] == "accuracy"]["mean"]
    assert sorted(lrs.round(6)) == [0.0, 0.1, 0.2, 0.3, 0.9]
    nxt = second.ask()
    keys = {tuple(p[n] for n in space) for p, _ in history[:5]}
    assert tuple(nxt[n] for n in space) not in keys
    assert all(math.isfinite(v) for v in nxt.values())


def test_the_searcher_snapshot_waits_until_the_trials_since_are_worth_two_hundred_times_its_cost(tmp_path: Path):
    """A study of short trials does not pay a whole Ax snapshot after each; a long trial still gets one."""
    from types import SimpleNamespace

    from tuner.energy import J_PER_KWH
    from tuner.study.study import SNAPSHOT_SHARE, Study

    saved: list[Path] = []

    class Searcher:
        cpu_seconds = 0.0

        def save_state(self, path: Path) -> bool:
            start = time.process_time()
            while time.process_time() - start < 0.02:  # a snapshot that costs CPU
                pass
            saved.append(path)
            return True

    study = Study.__new__(Study)
    study.searcher, study.files = Searcher(), SimpleNamespace(searcher=tmp_path / "searcher.json")
    study.ledger = SimpleNamespace(watts_per_core=10.0, trials_kwh=0.0)
    study._snapshot_cpu_s, study._snapshot_trials_kwh = 0.0, None
    assert SNAPSHOT_SHARE == 0.005
    assert study._snapshot_due()  # the first one is always written
    study.save_searcher()
    cost_kwh = study._snapshot_cpu_s * 10.0 / J_PER_KWH
    assert study.searcher.cpu_seconds == study._snapshot_cpu_s > 0  # charged to the tuner's overhead
    study.ledger.trials_kwh = 100 * cost_kwh  # short trials: the snapshot would cost 1 % of them
    assert not study._snapshot_due()
    study.ledger.trials_kwh = 201 * cost_kwh  # a long one on top: now it is worth it
    assert study._snapshot_due()
    assert len(saved) == 1


def test_a_damaged_ax_snapshot_is_rebuilt_from_the_ledger(tmp_path: Path):
    from tuner.config import FloatRange
    from tuner.search.ax_searcher import AxSearcher

    space = {"lr": FloatRange(type="float", low=1e-4, high=1e-1, log=True)}
    history = [({"lr": 10 ** -(i + 1)}, Outcome("completed", i / 10, 1e-4)) for i in range(3)]
    (tmp_path / "searcher.json").write_text("")  # what a power cut mid-write could leave
    searcher = AxSearcher(space, seed=0, initial_trials=2)
    searcher.resume(history, tmp_path / "searcher.json")
    trials = searcher.client._experiment.trials  # noqa: SLF001
    assert sum(t.status.is_completed for t in trials.values()) == 3


def test_interrupted_trials_do_not_use_up_max_trials_and_a_fired_budget_stop_holds():
    from tuner.config import FloatRange
    from tuner.search import GridSearcher
    from tuner.study.budget import BudgetGate
    from tuner.study.ledger import EnergyLedger

    ledger = EnergyLedger(1.0, 10.0, "accuracy")
    ledger.restore({"overhead_kwh": 1e-6, "stopped_at": None, "entries": [
        {"trial_id": "a", "params": {"x": 0.0}, "status": "completed", "energy_kwh": 1e-5,
         "metrics": {"accuracy": 0.1}},
        {"trial_id": "b", "params": {"x": 1.0}, "status": "running", "energy_kwh": 2e-6},
    ]})
    ledger.interrupt_unfinished("driver died")
    assert ledger.n_trials == 1 and ledger.total_kwh == pytest.approx(1e-5 + 2e-6 + 1e-6)
    grid = GridSearcher({"x": FloatRange(type="float", low=0.0, high=1.0)}, seed=0, resolution=2)
    grid.resume([({"x": 0.0}, Outcome("completed", 0.1, 1e-5)), ({"x": 1.0}, Outcome("stopped"))])
    gate = BudgetGate(grid, ledger, max_trials=2)
    assert gate.suggest("c") == {"x": 1.0}  # the interrupted point runs again, within the cap
    stopped = EnergyLedger(1.0, 10.0, "accuracy")
    stopped.restore({**ledger.to_json(), "stopped_at": 123.0})
    assert not stopped.can_start_trial()


def test_resume_refuses_when_the_ledger_is_gone_but_trials_were_recorded(tmp_path: Path):
    import tuner
    from tuner.config import ConfigError

    out = tmp_path / "out"
    out.mkdir()
    config = {"objective": "tests.objectives_for_tests:quadratic", "budget_kwh": 1.0, "output_dir": out,
              "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    from tuner.config import config_dump

    cfg = tuner.load_config(config)
    (out / "study.json").write_text(json.dumps({"name": "s", "mlflow_run_id": "", "config": config_dump(cfg),
                                                "tracking_uri": cfg.tracking_uri, "started_at": 0}))
    (out / "trials.csv").write_text("trial_id,status\na,completed\n")
    with pytest.raises(ConfigError, match="ledger.json is missing"):
        tuner.tune(config, resume=True, progress=False)


def test_an_abandoned_repeat_does_not_hide_the_running_original_from_ax(tmp_path: Path):
    from tuner.config import FloatRange
    from tuner.search.ax_searcher import AxSearcher

    space = {"lr": FloatRange(type="float", low=1e-4, high=1e-1, log=True)}
    first = AxSearcher(space, seed=0, initial_trials=2)
    running = first.ask()  # in flight when the snapshot is taken ...
    repeat = first.client.attach_trial(parameters=dict(running))
    first.client.mark_trial_abandoned(repeat)  # ... and a repeat of it was set aside
    first.save_state(tmp_path / "searcher.json")
    second = AxSearcher(space, seed=0, initial_trials=2)
    second.resume([(running, Outcome("completed", 0.5, 1e-4))], tmp_path / "searcher.json")
    trials = second.client._experiment.trials  # noqa: SLF001
    assert sum(t.status.is_completed for t in trials.values()) == 1


def test_a_signal_ends_the_study_resumable_and_resume_finishes_it(ray_session, tmp_path: Path):
    sig = signal.SIGINT  # Ctrl-C; SIGTERM takes the same path (test_sigterm_interrupts_the_ledger_like_ctrl_c)
    address = ray_session.get_runtime_context().gcs_address
    study, out = _study(tmp_path), tmp_path / "out"
    first = _greentune(str(study), address=address, cwd=tmp_path)
    try:
        _wait_for_flight(out, first)
        flying = {e["trial_id"]: e for e in _ledger(out)["entries"] if e["status"] == "running"}
        first.send_signal(sig)
        output, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    name = signal.Signals(sig).name
    assert first.returncode == 128 + sig, output
    assert f"the study was interrupted by {name}; go on with:" in output and "--resume" in output
    state = json.loads((out / "study.json").read_text())
    assert state["finish_reason"] == f"interrupted by {name}" and not state.get("finished_at")
    books = {e["trial_id"]: e for e in _ledger(out)["entries"]}
    for trial_id, entry in flying.items():  # stopped, booked with what they spent, not left running
        assert books[trial_id]["status"] == "interrupted"
        assert books[trial_id]["energy_kwh"] >= entry["energy_kwh"] > 0
    # so is any trial that started before the signal landed; nothing is left open
    assert {e["status"] for e in books.values()} <= {"completed", "interrupted"}
    assert not [e for e in books.values() if not e["ended_at"]]
    interrupted = {t for t, e in books.items() if e["status"] == "interrupted"}
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    assert client.get_run(state["mlflow_run_id"]).info.status == "KILLED"

    second = _greentune(str(study), "--resume", address=address, cwd=tmp_path)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    trials = read_trials_csv(out / "trials.csv")
    completed = trials[trials["status"] == "completed"]
    assert len(completed) == GRID_POINTS and completed["x"].round(6).nunique() == GRID_POINTS
    assert set(trials.loc[trials["status"] == "interrupted", "trial_id"]) == interrupted
    state = json.loads((out / "study.json").read_text())
    assert state["finished_at"] and state["finish_reason"] == "search space exhausted"
    assert client.get_run(state["mlflow_run_id"]).info.status == "FINISHED"


def test_one_live_driver_per_study_and_a_dead_drivers_lock_is_free(tmp_path: Path):
    from tuner.config import ConfigError
    from tuner.study.lock import StudyLock

    held = StudyLock.acquire(tmp_path)
    with pytest.raises(ConfigError, match=rf"being run by another driver \(pid {os.getpid()} on "):
        StudyLock.acquire(tmp_path)
    held.release()
    StudyLock.acquire(tmp_path).release()
    # a driver killed with SIGKILL leaves no stale lock: the kernel drops it with the process
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from tuner.study.lock import StudyLock; "
         f"StudyLock.acquire(Path({str(tmp_path)!r})); print('held', flush=True); time.sleep(60)"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"pid {holder.pid} "):
            StudyLock.acquire(tmp_path)
    finally:
        holder.kill()
        holder.wait(10)
    StudyLock.acquire(tmp_path).release()


def test_resume_while_the_first_driver_runs_is_refused(ray_session, tmp_path: Path):
    import tuner
    from tuner.config import ConfigError, load_config
    from tuner.study import Study

    config = load_config({"objective": "tests.objectives_for_tests:quadratic", "budget_kwh": 1.0,
                          "output_dir": tmp_path / "out", "search_space": {"x": {"type": "float", "low": 0, "high": 1}}})
    first = Study.open(config)
    try:
        with pytest.raises(ConfigError, match="being run by another driver"):
            tuner.tune(config, resume=True, progress=False)
        with pytest.raises(ConfigError, match="already holds a study"):
            tuner.tune(config, progress=False)
    finally:
        first.lock.release()


def test_a_finished_study_in_output_dir_points_to_the_report_not_to_resume(tmp_path: Path):
    import tuner
    from tuner.config import ConfigError

    out = tmp_path / "out"
    out.mkdir()
    config = {"objective": "tests.objectives_for_tests:quadratic", "budget_kwh": 1.0, "output_dir": out,
              "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    (out / "study.json").write_text(json.dumps({"name": "s", "mlflow_run_id": "x", "finished_at": 1.0,
                                                "finish_reason": "energy budget spent"}))
    with pytest.raises(ConfigError) as err:
        tuner.tune(config, progress=False)
    message = str(err.value)
    assert "already holds a finished study (energy budget spent)" in message
    assert f"`greentune report {out}`" in message and "another `name` or `output_dir`" in message
    assert "resume" not in message
    with pytest.raises(ConfigError, match=r"already finished \(energy budget spent\); nothing to resume: .*"
                                          r"another `name` or `output_dir`.*`greentune report "):
        tuner.tune(config, resume=True, progress=False)


def test_sigterm_interrupts_the_ledger_like_ctrl_c_and_the_handlers_are_put_back():
    from tuner.study.ledger import EnergyLedger
    from tuner.study.signals import ending_on_signals

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    ledger = EnergyLedger(1.0, 10.0, "accuracy")
    with ending_on_signals(ledger):
        assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"  # Ray Tune's would end the study as finished
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while ledger.interrupted_by is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ledger.interrupted_by == "SIGTERM" and not ledger.can_start_trial()
        assert signal.getsignal(signal.SIGTERM) == before[0]  # a second signal acts as it would have
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_deleted_output_dir_is_written_again_and_nothing_is_lost(ray_session, tmp_path: Path):
    address = ray_session.get_runtime_context().gcs_address
    study, out = _small_study(tmp_path), tmp_path / "out"
    first = _greentune(str(study), address=address, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while not [e for e in _ledger(out)["entries"] if e["status"] == "completed"]:
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read() if first.stdout else ""
            time.sleep(0.1)
        shutil.rmtree(out)
        output, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, output
    assert "was deleted while the study ran; recreated it" in output
    trials = read_trials_csv(out / "trials.csv")
    completed = trials[trials["status"] == "completed"]  # the trials booked before the deletion included
    assert len(completed) == 3 and completed["x"].round(6).nunique() == 3
    state = json.loads((out / "study.json").read_text())
    assert state["finished_at"] and state["total_energy_kwh"] == pytest.approx(
        trials["energy_kwh"].sum() + state["overhead_kwh"], rel=1e-9)
    assert len(json.loads((out / "ledger.json").read_text())["entries"]) == len(trials)
    assert _plain_rerun_is_refused(study, tmp_path)


def _plain_rerun_is_refused(study: Path, cwd: Path) -> bool:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    again = subprocess.run([sys.executable, "-m", "tuner.cli", "run", str(study), "--quiet"], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=120)
    return again.returncode == 2 and "already holds a finished study" in again.stderr


_SLOW_REPORT_DRIVER = """
import pathlib, sys, time
import tuner.reporting

def stalled(result, directory):  # the driver is killed while it writes the report
    pathlib.Path(sys.argv[1]).write_text("writing the report")
    time.sleep(600)

tuner.reporting.build_report = stalled
from tuner.cli import main
sys.exit(main(["run", sys.argv[2], "--address", sys.argv[3], "--quiet"]))
"""


def test_a_driver_killed_while_writing_the_report_is_finished_by_resume(ray_session, tmp_path: Path):
    address = ray_session.get_runtime_context().gcs_address
    study, out, marker = _small_study(tmp_path), tmp_path / "out", tmp_path / "reporting"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    first = subprocess.Popen([sys.executable, "-c", _SLOW_REPORT_DRIVER, str(marker), str(study), address],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read() if first.stdout else ""
            time.sleep(0.2)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    state = json.loads((out / "study.json").read_text())
    assert not state.get("finished_at") and state["finishing_reason"] == "search space exhausted"
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    assert client.get_run(state["mlflow_run_id"]).info.status == "RUNNING"
    starts = (tmp_path / "marks.txt").read_text().split()

    second = _greentune(str(study), "--resume", address=address, cwd=tmp_path)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    assert (tmp_path / "marks.txt").read_text().split() == starts  # no trial ran again
    state = json.loads((out / "study.json").read_text())
    assert state["finished_at"] and state["finish_reason"] == "search space exhausted"
    assert "finishing_reason" not in state
    assert (out / "report.html").exists()
    assert client.get_run(state["mlflow_run_id"]).info.status == "FINISHED"
