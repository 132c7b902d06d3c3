"""Issue 23, the objective cannot corrupt the books: reserved result keys are refused, a
reported energy far below the measured one is not believed, a trial that overstays
``trial_timeout_s`` is ended with its energy counted, the objective's processes are
metered and ended with its trial, and a trial that dies by ``os._exit`` keeps the energy
of its last heartbeat.

The unit cases build a trial's final record from a real measurement; the others run
real Ray studies (``ray_session``) and look at the result, the files and the processes.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import psutil
import pytest

import tuner
from tests import book_objectives as objs
from tuner import trial as trial_module
from tuner.energy import Measurement
from tuner.study.record import UNDERREPORTED_SOURCE
from tuner.trial import REPORTED_ENERGY_FLOOR, _final_record

MEASURED = Measurement(energy_kwh=2e-6, duration_s=1.0, source="cpu-time-estimate", relative_uncertainty=0.5,
                       cpu_time_s=0.7)


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize("returned", [{"co2_kg": -1.0}, {"energy_cpu_kwh": 0.0}, {"duration_s": 1.0},
                                      {"done": 1.0}, {"greentune_status": 1.0}, {"time_total_s": 0.0}],
                         ids=["co2_kg", "energy_part", "duration", "ray_done", "greentune", "ray_time"])
def test_a_reserved_key_returned_fails_the_trial_and_keeps_the_measurement(returned: dict):
    record = _final_record("returned", {"accuracy": 0.5, **returned}, {}, 0, MEASURED, "accuracy")
    key = next(iter(returned))
    assert record["greentune_status"] == "failed"
    assert f"reserved key(s) ['{key}']" in record["greentune_error"]
    assert record["energy_kwh"] == MEASURED.energy_kwh and record["energy_source"] == "cpu-time-estimate"
    if key != "duration_s":
        assert record.get(key) != returned[key]  # the objective's figure is not in the result


def test_report_of_a_reserved_key_raises_in_the_objective(monkeypatch):
    monkeypatch.setattr(trial_module, "_current", trial_module._Session())
    with pytest.raises(ValueError, match=r"tuner.report: reserved key\(s\) \['co2_kg'\]"):
        tuner.report(accuracy=0.5, co2_kg=-1.0)
    tuner.report(accuracy=0.5, energy_kwh=1e-6)  # the one key an objective may report


@pytest.mark.parametrize("reported", [0.0, 1e-7])
def test_a_report_far_below_the_measurement_books_the_measurement(reported: float, caplog):
    assert reported < REPORTED_ENERGY_FLOOR * MEASURED.energy_kwh
    with caplog.at_level(logging.WARNING, logger="tuner"):
        record = _final_record("returned", {"accuracy": 0.5, "energy_kwh": reported}, {}, 0, MEASURED, "accuracy")
    assert record["greentune_status"] == "completed"
    assert record["energy_kwh"] == MEASURED.energy_kwh
    assert record["energy_source"] == UNDERREPORTED_SOURCE
    assert record["energy_reported_kwh"] == reported
    assert "the measured energy is booked" in caplog.text


@pytest.mark.parametrize("reported", [3e-7, 2e-6, 0.5])
def test_a_plausible_report_is_believed(reported: float):
    record = _final_record("returned", {"accuracy": 0.5, "energy_kwh": reported}, {}, 0, MEASURED, "accuracy")
    assert record["energy_kwh"] == reported and record["energy_source"] == "reported"
    assert "energy_reported_kwh" not in record


def test_trial_timeout_must_be_positive():
    from tuner.config import ConfigError, load_config

    base = {"objective": "tests.objectives_for_tests:quadratic", "budget_kwh": 1.0,
            "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    assert load_config(base).trial_timeout_s is None
    assert load_config({**base, "trial_timeout_s": 30}).trial_timeout_s == 30
    with pytest.raises(ConfigError, match="trial_timeout_s"):
        load_config({**base, "trial_timeout_s": 0})


# --------------------------------------------------------------------------- real studies

KINDS = ["good", "co2", "zero_energy", "children", "exit"]


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def books_study(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("books")
    pid_dir = root / "pids"
    pid_dir.mkdir()
    result = tuner.tune(
        {"objective": objs.books, "strategy": "grid", "seed": 0, "output_dir": root / "study",
         "max_concurrent_trials": 1, "reuse_trial_processes": False, "energy": {"report_interval_s": 0.5},
         "search_space": {"kind": {"type": "choice", "values": KINDS}, "pid_dir": str(pid_dir)}},
        budget_kwh=1.0, progress=False,
    )
    yield result, root / "study", pid_dir
    for name in ("child", "grandchild"):  # never leave a burner behind, whatever happened
        path = pid_dir / f"{name}.pid"
        if path.exists():
            try:
                psutil.Process(int(path.read_text())).kill()
            except psutil.Error:
                pass


@pytest.mark.ray
def test_returned_co2_cannot_make_the_study_co2_negative(books_study):
    result, _, _ = books_study
    row = result.trials.set_index("kind").loc["co2"]
    assert row["status"] == "failed" and "reserved key(s) ['co2_kg']" in row["error"]
    assert row["energy_kwh"] > 0 and row["co2_kg"] >= 0
    assert result.co2_kg is not None and result.co2_kg >= 0
    assert (result.trials["co2_kg"] >= 0).all()


@pytest.mark.ray
def test_a_reported_zero_energy_cannot_bypass_the_budget(books_study):
    result, out, _ = books_study
    row = result.trials.set_index("kind").loc["zero_energy"]
    assert row["status"] == "completed"
    assert row["energy_source"] == UNDERREPORTED_SOURCE and row["energy_reported_kwh"] == 0.0
    assert row["energy_kwh"] > 0  # the measured window, 0.5 CPU-s or more
    ledger = {e["trial_id"]: e for e in json.loads((out / "ledger.json").read_text())["entries"]}
    assert ledger[row["trial_id"]]["energy_kwh"] == pytest.approx(row["energy_kwh"])
    assert result.total_energy_kwh == pytest.approx(result.trials["energy_kwh"].sum() + result.overhead_kwh)


@pytest.mark.ray
def test_os_exit_keeps_the_energy_of_the_last_heartbeat(books_study):
    result, out, _ = books_study
    row = result.trials.set_index("kind").loc["exit"]
    assert row["status"] == "failed"
    (path,) = (out / "ray").glob(f"*{row['trial_id']}*/result.json")
    heard = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert heard[-1]["greentune_status"] == "running"
    assert row["energy_kwh"] > 0 and row["energy_kwh"] == pytest.approx(heard[-1]["energy_kwh"])
    assert row["cpu_time_s"] >= 1.2  # four reports of 0.4 CPU-s each, most of them heard


@pytest.mark.ray
def test_the_objectives_processes_are_metered_and_ended_with_its_trial(books_study):
    result, _, pid_dir = books_study
    row = result.trials.set_index("kind").loc["children"]
    assert row["status"] == "completed"
    # both burners are gone: the child, and the daemon's grandchild that was an orphan
    for name in ("child", "grandchild"):
        assert _gone(int((pid_dir / f"{name}.pid").read_text())), f"the {name} outlived its trial"
    # both were metered: each burnt CHILD_CPU_S before the objective returned
    assert row["cpu_time_s"] >= 2 * objs.CHILD_CPU_S * 0.95


@pytest.mark.ray
def test_the_honest_trial_is_untouched(books_study):
    result, _, _ = books_study
    row = result.trials.set_index("kind").loc["good"]
    assert row["status"] == "completed" and row["energy_source"] != UNDERREPORTED_SOURCE
    assert row["accuracy"] == 0.9


@pytest.mark.ray
def test_an_overstaying_trial_is_ended_at_its_timeout_with_its_energy(ray_session, tmp_path: Path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    timeout = 2.0
    started = time.monotonic()
    result = tuner.tune(
        {"objective": objs.overstays, "strategy": "grid", "seed": 0, "output_dir": tmp_path / "study",
         "max_concurrent_trials": 2, "trial_timeout_s": timeout, "energy": {"report_interval_s": 0.5},
         "search_space": {"kind": {"type": "choice", "values": ["sleep", "burn", "quick"]}, "pid_dir": str(pid_dir)}},
        budget_kwh=1.0, progress=False,
    )
    assert time.monotonic() - started < 120  # the sleeper would have held the study for 600 s
    trials = result.trials.set_index("kind")
    assert trials.loc["quick", "status"] == "completed"
    for kind in ("sleep", "burn"):
        row = trials.loc[kind]
        assert row["status"] == "failed", kind
        assert "timeout: the trial ran longer than trial_timeout_s = 2 s" in row["error"]
        assert row["energy_kwh"] > 0
        assert timeout <= row["duration_s"] < timeout + 3
        assert _gone(int((pid_dir / f"{kind}.pid").read_text())), f"the {kind} trial's process lives on"
    # the burner's CPU time until the timeout is counted (the sleeper has next to none)
    assert trials.loc["burn", "cpu_time_s"] > max(0.1, 2 * trials.loc["sleep", "cpu_time_s"])
    assert trials.loc["burn", "energy_kwh"] > trials.loc["sleep", "energy_kwh"]
    assert result.total_energy_kwh == pytest.approx(result.trials["energy_kwh"].sum() + result.overhead_kwh)
