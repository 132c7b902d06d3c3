"""MLflow while the study runs, read back through a real ``mlflow server``'s REST API.

A child run opens when its trial starts, every ``tuner.report()`` lands at its own step
and time as it arrives, the energy has one point per heartbeat, and the run closes
with the trial's true start and end.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import tuner
from tests import objectives_for_tests as objectives
from tests.local_cluster import MlflowServer
from tuner.study.files import StudyFiles


def _rest(uri: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{uri}/api/2.0/mlflow/{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _children(uri: str, name: str) -> list[dict[str, Any]]:
    experiment = _rest(uri, f"experiments/get-by-name?experiment_name=greentune-{name}")["experiment"]
    found = _rest(uri, "runs/search", {"experiment_ids": [experiment["experiment_id"]],
                                       "filter": "tags.`greentune.kind` = 'trial'"})
    return found.get("runs", [])


def _history(uri: str, run_id: str, key: str) -> list[dict[str, Any]]:
    return _rest(uri, f"metrics/get-history?run_id={run_id}&metric_key={key}").get("metrics", [])


def _wait_for(condition: Any, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise TimeoutError("condition not met")


def test_a_running_trial_is_in_mlflow_with_one_point_per_report(ray_session, tmp_path: Path):
    control = tmp_path / "control"
    control.mkdir()
    out = tmp_path / "out"
    with MlflowServer.start(tmp_path / "mlflow") as server:
        study = {"name": "live", "objective": objectives.reports_then_waits,
                 "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}, "control": str(control)},
                 "strategy": "random", "seed": 0, "max_trials": 1, "max_concurrent_trials": 1,
                 "output_dir": out, "mlflow": {"tracking_uri": server.uri},
                 "energy": {"report_interval_s": 0.3}}
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = tuner.tune(study, budget_kwh=1.0, progress=False)
            except BaseException as exc:  # noqa: BLE001 - reported below
                outcome["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            _wait_for(lambda: (control / "reported").exists() or "error" in outcome)
            assert "error" not in outcome, outcome.get("error")

            def running_with_reports() -> dict[str, Any] | None:
                for run in _children(server.uri, "live"):
                    if run["info"]["status"] == "RUNNING" and len(_history(server.uri, run["info"]["run_id"],
                                                                           "accuracy")) == objectives.LIVE_REPORTS:
                        return run
                return None

            live = _wait_for(running_with_reports, 30)
            run_id = live["info"]["run_id"]
            tags = {t["key"]: t["value"] for t in live["data"]["tags"]}
            assert tags["greentune.status"] == "running"
            assert {p["key"]: p["value"] for p in live["data"]["params"]}["control"] == str(control)
            energy = _wait_for(lambda: _history(server.uri, run_id, "energy_kwh"), 30)
            assert energy and all(point["value"] >= 0 for point in energy)
            assert "end_time" not in live["info"] or not live["info"]["end_time"]
        finally:
            (control / "release").touch()
            thread.join(120)
        assert "error" not in outcome, outcome.get("error")
        result = outcome["result"]

        children = _children(server.uri, "live")
        assert [c["info"]["run_id"] for c in children] == [run_id]  # the live run was closed, not redone
        child = children[0]
        assert child["info"]["status"] == "FINISHED"
        accuracy = sorted(_history(server.uri, run_id, "accuracy"), key=lambda p: int(p.get("step", 0)))
        assert [int(p.get("step", 0)) for p in accuracy] == [1, 2, 3]
        assert [p["value"] for p in accuracy] == pytest.approx([0.1, 0.2, 0.3])
        stamps = [int(p["timestamp"]) for p in accuracy]
        assert stamps == sorted(stamps) and len(set(stamps)) == 3  # each report at its own time
        loss = _history(server.uri, run_id, "loss")
        assert sorted(int(p.get("step", 0)) for p in loss) == [1, 2, 3]

        (record,) = StudyFiles(out).read_ledger()["entries"]
        energy = sorted(_history(server.uri, run_id, "energy_kwh"), key=lambda p: int(p.get("step", 0)))
        assert len(energy) == len(record["energy_timeline"]) + 1  # one per heartbeat, then the total
        assert energy[-1]["value"] == pytest.approx(result.trials["energy_kwh"].iloc[0])
        assert [p["value"] for p in energy] == sorted(p["value"] for p in energy)
        power = _history(server.uri, run_id, "power_w")
        assert power and all(p["value"] >= 0 for p in power)

        # the child run spans the trial, not the moment it was logged
        start_ms, end_ms = int(child["info"]["start_time"]), int(child["info"]["end_time"])
        assert start_ms <= stamps[0] and end_ms >= stamps[-1]
        assert end_ms - start_ms >= 500
        assert abs(end_ms / 1000 - record["ended_at"]) < 0.01

        # the parent run ranks studies: every config field as a param, and a summary
        parent = _rest(server.uri, f"runs/get?run_id={result.mlflow_run_id}")["run"]
        params = {p["key"]: p["value"] for p in parent["data"]["params"]}
        assert params["early_stopping"] == "none" and params["initial_trials"] and params["strategy"] == "random"
        assert json.loads(params["search_space.x"]) == {"type": "float", "low": 0.0, "high": 1.0, "log": False}
        metrics = {m["key"]: m["value"] for m in parent["data"]["metrics"]}
        assert metrics["best_accuracy"] == metrics["knee_accuracy"] == pytest.approx(0.3)
        assert metrics["n_completed"] == 1 and metrics["n_failed"] == 0 and metrics["n_stopped"] == 0
        # the reference point: 0 for an accuracy, the budget for energy, stored with the study
        assert metrics["hv_reference_metric"] == 0.0 and metrics["hv_reference_kwh"] == 1.0
        import math

        kwh = result.trials["energy_kwh"].iloc[0]
        assert metrics["hypervolume"] == pytest.approx(0.3 * math.log10(1.0 / kwh), rel=1e-6)
        stored = json.loads((out / "study.json").read_text())["config"]["reference_point"]
        assert stored == {"metric": 0.0, "energy_kwh": 1.0}
