"""Faults injected for real: for each, how many trials and how much measured energy were lost.

The answer must be zero, or exactly what was in flight, counted. See the README's
"When things break" for what each fault does to a study.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import tuner
from tests import fault_objectives as faults
from tests.local_cluster import MlflowServer, free_port
from tuner.study.files import read_trials_csv

pytestmark = pytest.mark.ray
X = {"x": {"type": "float", "low": 0.0, "high": 1.0}}


def _children(tracking_uri: str, run_id: str) -> dict[str, object]:
    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.get_run(run_id)
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    return {run.data.tags["greentune.trial_id"]: run for run in runs}


def _assert_run_ids_booked(out: Path, tracking_uri: str, run_id: str) -> None:
    """Every trial in trials.csv and ledger.json names its child run, queued ones included."""
    expected = {trial_id: run.info.run_id for trial_id, run in _children(tracking_uri, run_id).items()}
    on_disk = read_trials_csv(out / "trials.csv")
    assert dict(zip(on_disk["trial_id"], on_disk["mlflow_run_id"], strict=True)) == expected
    ledger = json.loads((out / "ledger.json").read_text())
    assert {e["trial_id"]: e["mlflow_run_id"] for e in ledger["entries"]} == expected


def _ray_results(out: Path, trial_id: str) -> list[dict]:
    """What Ray itself recorded of a trial's results (its JSON logger), oldest first."""
    (path,) = (out / "ray").glob(f"*{trial_id}*/result.json")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------ 1. trial killed


def test_sigkilled_trial_is_failed_and_its_energy_to_the_last_heartbeat_counted(ray_session, tmp_path: Path):
    out = tmp_path / "kill"
    result = tuner.tune(
        {"objective": faults.killed_after_reports, "search_space": X, "strategy": "grid",
         "grid_resolution": 3, "seed": 0, "max_concurrent_trials": 1, "output_dir": out},
        budget_kwh=1.0, progress=False,
    )
    trials = result.trials.set_index("x")
    assert len(trials) == 3
    killed = trials.loc[1.0]
    assert killed["status"] == "failed" and killed["error"]
    assert (trials.drop(index=1.0)["status"] == "completed").all()  # the others were not touched
    assert result.finish_reason == "search space exhausted"
    # Counted: the energy of the killed trial's last heartbeat, as Ray itself logged it.
    heard = _ray_results(out, killed["trial_id"])
    assert heard[-1]["greentune_status"] == "running" and heard[-1]["greentune_epochs"] == faults.KILL_REPORTS
    assert killed["energy_kwh"] > 0
    assert killed["energy_kwh"] == pytest.approx(heard[-1]["energy_kwh"])
    assert killed["n_reports"] == faults.KILL_REPORTS
    assert result.total_energy_kwh == pytest.approx(trials["energy_kwh"].sum() + result.overhead_kwh)
    # The table on disk and MLflow agree with the result.
    on_disk = read_trials_csv(out / "trials.csv").set_index("trial_id")
    assert on_disk.loc[killed["trial_id"], "status"] == "failed"
    assert on_disk["energy_kwh"].sum() == pytest.approx(trials["energy_kwh"].sum())
    children = _children(result.tracking_uri, result.mlflow_run_id)
    child = children[killed["trial_id"]]
    assert child.info.status == "FAILED" and child.data.tags["greentune.status"] == "failed"
    assert child.data.metrics["energy_kwh"] == pytest.approx(killed["energy_kwh"])
    assert sorted(c.info.status for c in children.values()) == ["FAILED", "FINISHED", "FINISHED"]


# ------------------------------------------------------------------ 3. MLflow server down


class _Controller:
    """Runs a script of steps in a thread beside ``tune()``: release trials, stop/start MLflow.

    Whatever happens, every ticket is released at the end so the study cannot hang.
    """

    def __init__(self, control: Path, out: Path, root: Path, port: int) -> None:
        self.control, self.out, self.root, self.port = control, out, root, port
        control.mkdir()
        self.server_stack: ExitStack | None = None
        self.error: BaseException | None = None
        self.queued_while_down: int | None = None

    def release(self, *numbers: int) -> None:
        for n in numbers:
            (self.control / f"release-{n}").touch()

    def wait_done(self, n: int, timeout_s: float = 180) -> None:
        """Until ``n`` trials are booked as finished in trials.csv (so their MLflow record was tried)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                table = read_trials_csv(self.out / "trials.csv")
                if (table["status"] == "completed").sum() >= n:
                    return
            except (FileNotFoundError, pd.errors.EmptyDataError, KeyError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{n} trials did not finish in {timeout_s} s")

    def start_server(self) -> str:
        self.server_stack = ExitStack()
        server = self.server_stack.enter_context(MlflowServer.start(self.root, port=self.port))
        return server.uri

    def stop_server(self) -> None:
        assert self.server_stack is not None
        self.server_stack.close()
        self.server_stack = None

    def run(self, script: Callable[[_Controller], None]) -> threading.Thread:
        def body() -> None:
            try:
                script(self)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.error = exc
            finally:
                self.release(*range(50))

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        return thread


def _ticketed_study(control: Path, out: Path, uri: str, trials: int) -> dict:
    return {"objective": faults.ticketed, "search_space": {**X, "control": str(control)},
            "strategy": "sobol", "seed": 0, "max_trials": trials, "max_concurrent_trials": 1,
            "output_dir": out, "mlflow": {"tracking_uri": uri}}


def _assert_books_match(uri: str, run_id: str, result: tuner.TuneResult) -> None:
    """Every trial in MLflow exactly once, with the energy of trials.csv, and the study's total."""
    on_disk = read_trials_csv(result.output_dir / "trials.csv").set_index("trial_id")
    children = _children(uri, run_id)
    assert sorted(children) == sorted(on_disk.index)
    for trial_id, child in children.items():
        assert child.info.status == "FINISHED"
        assert child.data.metrics["energy_kwh"] == pytest.approx(on_disk.loc[trial_id, "energy_kwh"])
    parent = MlflowClient(tracking_uri=uri).get_run(run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["total_energy_kwh"] == pytest.approx(result.total_energy_kwh)
    assert parent.data.metrics["n_completed"] == len(on_disk)
    assert result.total_energy_kwh == pytest.approx(on_disk["energy_kwh"].sum() + result.overhead_kwh)


def _served_controller(tmp_path: Path) -> tuple[_Controller, Path, str]:
    """A study controller whose MLflow server is up: ``(controller, output dir, tracking URI)``."""
    out = tmp_path / "out"
    ctl = _Controller(tmp_path / "control", out, tmp_path / "mlflow-server", free_port())
    return ctl, out, ctl.start_server()


def test_mlflow_down_mid_study_queues_on_disk_and_flushes_when_back(ray_session, tmp_path: Path):
    from tuner.tracking.queue import QUEUE_FILE, DiskQueue

    ctl, out, uri = _served_controller(tmp_path)

    def script(c: _Controller) -> None:
        c.release(0)
        c.wait_done(1)
        c.stop_server()
        c.release(1, 2)
        c.wait_done(3)  # two records made while the server was down
        c.queued_while_down = len(DiskQueue(out / QUEUE_FILE))
        c.start_server()
        c.release(3)

    thread = ctl.run(script)
    try:
        result = tuner.tune(_ticketed_study(ctl.control, out, uri, 4), budget_kwh=1.0, progress=False)
        thread.join(60)
        assert ctl.error is None, ctl.error
        assert ctl.queued_while_down == 2
        assert (result.trials["status"] == "completed").all() and len(result.trials) == 4
        assert not (out / QUEUE_FILE).exists()  # flushed when the server came back
        _assert_books_match(uri, result.mlflow_run_id, result)
        _assert_run_ids_booked(out, uri, result.mlflow_run_id)
        assert result.trials["mlflow_run_id"].notna().all()
    finally:
        if ctl.server_stack is not None:
            ctl.stop_server()


@pytest.mark.slow
def test_mlflow_that_never_comes_back_warns_keeps_everything_and_flushes_later(
    ray_session, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    from tuner.cli import main
    from tuner.tracking.queue import QUEUE_FILE, DiskQueue

    ctl, out, uri = _served_controller(tmp_path)

    def script(c: _Controller) -> None:
        c.release(0)
        c.wait_done(1)
        c.stop_server()
        c.release(1, 2)

    thread = ctl.run(script)
    try:
        with caplog.at_level(logging.WARNING, logger="tuner"):
            result = tuner.tune(_ticketed_study(ctl.control, out, uri, 3), budget_kwh=1.0, progress=False)
        thread.join(60)
        assert ctl.error is None, ctl.error
        assert (result.trials["status"] == "completed").all() and len(result.trials) == 3
        queue = out / QUEUE_FILE
        assert f"never came back: 3 record(s) of this study are queued in {queue}" in caplog.text
        assert f"greentune flush {out}" in caplog.text
        kinds = [r["kind"] for r in DiskQueue(queue).records()]
        assert kinds == ["trial", "trial", "finish"]
        assert main(["flush", str(out)]) == 1  # still down: the queue stays
        assert len(DiskQueue(queue)) == 3

        ctl.start_server()
        assert main(["flush", str(out)]) == 0
        assert not queue.exists()
        _assert_books_match(uri, result.mlflow_run_id, result)
        _assert_run_ids_booked(out, uri, result.mlflow_run_id)
    finally:
        if ctl.server_stack is not None:
            ctl.stop_server()


# ------------------------------------------------------------------ 4. disk full

_DISK_FULL_STUDY = r"""
import json, sys
import ray, tuner
from tuner.atomic import OutputWriteError

out, uri, control = sys.argv[1], sys.argv[2], sys.argv[3]
ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
report = {"error": None}
try:
    tuner.tune({"objective": "tests.fault_objectives:fills_disk",
                "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}, "fill": out + "/filler",
                                 "control": control},
                "strategy": "grid", "grid_resolution": 3, "max_concurrent_trials": 1,
                "output_dir": out, "mlflow": {"tracking_uri": uri}}, budget_kwh=1.0, progress=False)
except OutputWriteError as exc:
    report.update(error=str(exc), errno=exc.errno, total_kwh=exc.result.total_energy_kwh,
                  overhead_kwh=exc.result.overhead_kwh, run_id=exc.result.mlflow_run_id,
                  trials=exc.result.trials.to_dict("records"))
# What a user finds on the full disk afterwards (the tmpfs goes away with this process).
import glob, os
from tuner.study.files import read_trials_csv
csv = os.path.join(out, "trials.csv")
report["disk_rows"] = read_trials_csv(csv).to_dict("records") if os.path.exists(csv) else None
report["temp_files"] = glob.glob(os.path.join(out, ".*.tmp"))
report["study_json"] = json.load(open(os.path.join(out, "study.json")))
print("REPORT " + json.dumps(report, default=str), flush=True)
"""


def test_disk_full_is_a_clear_error_and_leaves_consistent_files(tmp_path: Path):
    """A real full file system: a 1 MB tmpfs in a private mount namespace, filled by the second trial."""
    import errno
    import os
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux `unshare` to mount a private tmpfs")
    out = tmp_path / "tiny"
    out.mkdir()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # MLflow on a disk that has room
    mount = f"mount -t tmpfs -o size=1m tmpfs {out}"
    control = tmp_path / "control"
    control.mkdir()
    shell = f'{mount} && exec "$0" -c "$1" {out} {uri} {control}'
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        ["unshare", "--map-root-user", "--mount", "sh", "-c", shell, sys.executable, _DISK_FULL_STUDY],
        capture_output=True, text=True, env=env, timeout=600,
    )
    if proc.returncode != 0 and "REPORT" not in proc.stdout and "mount" in proc.stderr:
        pytest.skip(f"cannot mount a private tmpfs here: {proc.stderr[-300:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT "):])
    # A clear error naming the file and the problem, raised when the study's table was written.
    assert report["error"], "the study should have failed writing its outputs"
    assert report["errno"] == errno.ENOSPC
    assert f"could not write {out / 'trials.csv'}: No space left on device" in report["error"]
    assert "previous version is intact" in report["error"]
    # Mid-study, the failed write was logged and the study went on.
    assert f"could not write {out}/" in proc.stderr
    assert "the study goes on" in proc.stderr
    # No trial lost: all three finished, the filler too, and their energy is in the result.
    trials = {t["trial_id"]: t for t in report["trials"]}
    assert len(trials) == 3 and {t["status"] for t in trials.values()} == {"completed"}
    assert report["total_kwh"] == pytest.approx(sum(t["energy_kwh"] for t in trials.values()) + report["overhead_kwh"])
    # The files on the full disk are consistent: whole rows that agree with the ledger, no temp files.
    assert report["temp_files"] == []
    assert report["disk_rows"], "trials.csv from before the disk filled should still be there"
    for row in report["disk_rows"]:
        if row["status"] == "completed":
            assert row["energy_kwh"] == pytest.approx(trials[row["trial_id"]]["energy_kwh"])
    assert report["study_json"]["mlflow_run_id"] == report["run_id"]
    # MLflow, on a disk with room, has every trial and the study's total.
    children = _children(uri, report["run_id"])
    assert sorted(children) == sorted(trials)
    for trial_id, child in children.items():
        assert child.data.metrics["energy_kwh"] == pytest.approx(trials[trial_id]["energy_kwh"])
    parent = MlflowClient(tracking_uri=uri).get_run(report["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["total_energy_kwh"] == pytest.approx(report["total_kwh"])


# ------------------------------------------------------------------ 2. NVML errors mid-trial


def test_gpu_lost_mid_trial_completes_the_trial_with_a_degraded_source():
    """The trial's own record (what reaches trials.csv and MLflow), through the fake NVML.

    The meter level is tests/test_energy_nvml.py::test_gpu_lost_mid_window_is_absent_with_the_reason;
    here a heartbeat survives the lost GPU and the final record says what was lost.
    """
    from tests.fakes.fake_pynvml import FakeGpu, FakeNvml
    from tests.fakes.traces import SineTrace
    from tuner.config import EnergySettings
    from tuner.energy import make_meter
    from tuner.trial import _final_record

    fake = FakeNvml([FakeGpu("Tesla V100-SXM2-16GB", "GPU-aaaa", SineTrace(200.0, 60.0, period=0.9))])
    meter = make_meter(EnergySettings(), gpu_ids=["0"], nvml_module=fake)
    meter.begin_window("trial")
    time.sleep(0.3)
    before = meter.read_window("trial")  # a heartbeat while the GPU answers
    assert before.component("gpu").energy_kwh > 0
    fake.nvmlDeviceGetTotalEnergyConsumption = _gpu_lost
    heartbeat = meter.read_window("trial")  # a heartbeat after it is lost: no exception
    measured = meter.end_window("trial")
    meter.close()
    record = _final_record("returned", {"accuracy": 0.9}, {}, 1, measured, "accuracy")
    assert record["greentune_status"] == "completed" and record["accuracy"] == 0.9
    # Degraded, and says so: the GPU energy to its last good read is kept and flagged.
    assert record["energy_source_gpu"] == "nvml-energy-counter"
    assert "gpu:lost-mid-window" in record["energy_flags"].split(",")
    assert "GpuIsLost" in record["energy_fallback_gpu"]
    assert record["energy_gpu_kwh"] == pytest.approx(before.component("gpu").energy_kwh)
    # Nothing counted is taken back: the final figure is at least every heartbeat's.
    assert record["energy_kwh"] >= heartbeat.energy_kwh >= before.energy_kwh
    assert record["energy_kwh"] == pytest.approx(
        record["energy_cpu_kwh"] + record.get("energy_dram_kwh", 0.0) + record["energy_gpu_kwh"])


def test_gpu_lost_before_any_good_read_is_absent_not_zero():
    from tests.fakes.fake_pynvml import FakeGpu, FakeNvml
    from tests.fakes.traces import SineTrace
    from tuner.energy import make_meter

    fake = FakeNvml([FakeGpu("Tesla V100-SXM2-16GB", "GPU-aaaa", SineTrace(200.0, 60.0, period=0.9))])
    meter = make_meter(gpu_ids=["0"], nvml_module=fake)
    meter.begin_window("trial")
    fake.nvmlDeviceGetTotalEnergyConsumption = _gpu_lost
    record = meter.end_window("trial").as_record()
    meter.close()
    assert record["energy_source_gpu"] == "absent" and "energy_gpu_kwh" not in record
    assert "GpuIsLost" in record["energy_fallback_gpu"]


def _gpu_lost(handle: object) -> None:
    import pynvml

    raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)


# ------------------------------------------------------------------ 5. carbon API slow mid-study


def test_carbon_api_hanging_falls_back_and_the_study_finishes(ray_session, tmp_path: Path):
    """The provider-level fallbacks are tests/test_carbon_providers_http.py; this is the study's view.

    The API hangs past the client's timeout for the whole study (mid-study, its cache
    would answer for the half hour it already fetched, so no request would even be made).
    """
    from tests import objectives_for_tests as objs
    from tests.carbon_servers import serve

    with serve("ukci") as (url, state):
        state.mode = "hang"  # answers after 1.5 s, past the 0.3 s timeout
        result = tuner.tune(
            {"objective": objs.quadratic, "search_space": X, "strategy": "sobol", "seed": 0, "max_trials": 2,
             "output_dir": tmp_path / "out",
             "carbon": {"provider": "ukci", "base_url": url, "timeout_s": 0.3, "retries": 0}},
            budget_kwh=1.0, progress=False,
        )
    trials = result.trials
    assert (trials["status"] == "completed").all() and len(trials) == 2  # no trial lost
    for row in trials.to_dict("records"):  # static fallback, recorded with the reason
        assert "ukci" in row["carbon_fallback"]
        assert row["co2_kg"] == pytest.approx(row["energy_kwh"] * row["carbon_intensity_mean"] * result.pue / 1000)
    assert "ukci" in result.carbon["carbon_fallback"]
    assert result.co2_kg == pytest.approx(
        (trials["energy_kwh"].sum() + result.overhead_kwh) * trials["carbon_intensity_mean"].iloc[0] * result.pue / 1000)
    assert result.total_energy_kwh == pytest.approx(trials["energy_kwh"].sum() + result.overhead_kwh)


def test_replaying_a_half_written_trial_records_it_once(tmp_path: Path):
    """A server that died between creating a trial's child run and finishing it: the replay
    replaces the partial run, so the trial is in MLflow exactly once (real SQLite store)."""
    from tests import objectives_for_tests as objs
    from tuner.config import load_config
    from tuner.study.record import TrialRecord
    from tuner.tracking.queue import QUEUE_FILE, DiskQueue, flush_output_dir, open_tracker

    out = tmp_path / "out"
    out.mkdir()
    cfg = load_config({"objective": objs.quadratic, "search_space": X, "output_dir": out}, budget_kwh=1.0)
    tracker = open_tracker(cfg, out)
    run_id = tracker.start_study(cfg)
    (out / "study.json").write_text(json.dumps({"mlflow_run_id": run_id, "tracking_uri": cfg.tracking_uri}))
    entry = TrialRecord("t1", {"x": 0.25}, status="completed", energy_kwh=2e-6, metrics={"accuracy": 0.4})
    tracker.client.create_run(tracker.experiment_id, run_name="trial-t1", tags={
        "mlflow.parentRunId": run_id, "greentune.trial_id": "t1"})  # the half-written attempt
    queue = DiskQueue(out / QUEUE_FILE)
    queue.append({"kind": "trial", "entry": dataclasses.asdict(entry), "history": [[1, {"accuracy": 0.3}]]})
    assert flush_output_dir(out) == (0, 1)
    children = _children(cfg.tracking_uri, run_id)
    assert list(children) == ["t1"]
    assert children["t1"].info.status == "FINISHED"
    assert children["t1"].data.metrics["energy_kwh"] == pytest.approx(2e-6)
    assert children["t1"].data.params["x"] == "0.25"
    assert not queue.path.exists()


def test_booking_run_ids_keeps_numeric_looking_trial_ids_and_every_other_cell(tmp_path: Path):
    """Ray trial ids are hex: ``5e123456`` must stay text, and only empty run ids are filled."""
    from tuner.study.files import StudyFiles

    header = "trial_id,status,width,energy_kwh,n_reports,mlflow_run_id\n"
    (tmp_path / "trials.csv").write_text(header + "5e123456,completed,8,0.5,3,\n00000001,completed,16,0.25,,abc\n")
    (tmp_path / "ledger.json").write_text(json.dumps({"entries": [
        {"trial_id": "5e123456", "mlflow_run_id": ""}, {"trial_id": "00000001", "mlflow_run_id": "abc"}]}))
    StudyFiles(tmp_path).book_run_ids({"5e123456": "r1", "00000001": "other"})
    assert (tmp_path / "trials.csv").read_text() == (
        header + "5e123456,completed,8,0.5,3,r1\n00000001,completed,16,0.25,,abc\n")
    table = read_trials_csv(tmp_path / "trials.csv")
    assert list(table["trial_id"]) == ["5e123456", "00000001"]
    assert list(table["mlflow_run_id"]) == ["r1", "abc"]
    ledger = json.loads((tmp_path / "ledger.json").read_text())
    assert [e["mlflow_run_id"] for e in ledger["entries"]] == ["r1", "abc"]
