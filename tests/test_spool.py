"""A trial outliving its driver: it stops, and its last word is booked by the resumed driver.

Real processes, no Ray: a stand-in driver (a ``sleep``) and a trial process running the
trial wrapper's driver watch around a CPU-burning objective.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tuner.study.ledger import EnergyLedger
from tuner.study.record import running_result
from tuner.study.spool import read_last_words, write_last_word

ROOT = Path(__file__).resolve().parents[1]

_TRIAL = """
import socket, sys, time
from tuner.config import EnergySettings
from tuner.energy import make_meter
from tuner.study.record import running_result
from tuner.trial import TrialSettings, _Session, _watch_driver

spool, driver = sys.argv[1], int(sys.argv[2])
settings = TrialSettings(objective="tests.objectives_for_tests:quadratic", metric="accuracy",
                         energy=EnergySettings(watts_per_core=10.0), report_interval_s=0.2, spool_dir=spool,
                         driver_host=socket.gethostname(), driver_pid=driver)
meter = make_meter(settings.energy)
meter.begin_window("trial")
session = _Session()
session.last_word = lambda energy: {**running_result({"accuracy": 0.5}, energy.as_record(), 3, [], "s", False),
                                    "config": {"x": 0.25}}
_watch_driver(settings, "t1", meter, session, time.time())
print("watching", flush=True)
deadline = time.time() + 60
while time.time() < deadline:  # the objective: busy until someone ends it
    sum(range(10_000))
print("never ended", flush=True)
sys.exit(1)
"""


def test_a_trial_whose_driver_dies_stops_and_spools_its_energy(tmp_path: Path):
    spool = tmp_path / "inflight"
    spool.mkdir()
    driver = subprocess.Popen(["sleep", "120"])
    trial = subprocess.Popen([sys.executable, "-c", _TRIAL, str(spool), str(driver.pid)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert trial.stdout is not None and trial.stdout.readline().strip() == "watching"
        time.sleep(1.0)  # it burns a CPU-second while its driver lives
        driver.kill()
        driver.wait()  # reaped, as a shell or the user's terminal reaps a killed driver
        killed_at = time.time()
        assert trial.wait(timeout=20) == 0  # ended by its watch, not by its 60 s loop
    finally:
        driver.kill()
        trial.kill()
    words = read_last_words(spool)
    at, result = words["t1"]
    assert at >= killed_at - 0.05 and time.time() - killed_at < 20
    assert result["energy_kwh"] > 0 and result["config"] == {"x": 0.25}
    assert result["greentune_status"] == "running"  # booked as interrupted: it did not finish


def test_a_resumed_ledger_books_the_spooled_energy_and_a_result_that_came_late(tmp_path: Path):
    ledger = EnergyLedger(1.0, 10.0, "accuracy")
    ledger.start("flying", {"x": 0.5})
    ledger.start("finishing", {"x": 0.75})
    beat = running_result({"accuracy": 0.1}, {"energy_kwh": 1e-6}, 1, [], "s1", False)
    ledger.observe("flying", beat)
    ledger.observe("finishing", beat)
    spool = tmp_path / "inflight"
    spool.mkdir()
    write_last_word(str(spool), "flying", running_result({"accuracy": 0.2}, {"energy_kwh": 3e-6}, 2, [], "s1", False))
    write_last_word(str(spool), "finishing", {"accuracy": 0.9, "energy_kwh": 4e-6, "greentune_status": "completed",
                                              "greentune_epochs": 3, "greentune_segment": "s1"})
    write_last_word(str(spool), "unsaved", {**running_result({}, {"energy_kwh": 2e-6}, 0, [], "s2", False),
                                            "config": {"x": 1.0}})
    for trial_id, (at, result) in read_last_words(spool).items():
        ledger.observe(trial_id, result, at=at)
    ledger.interrupt_unfinished("driver died")
    assert ledger.get("flying").status.value == "interrupted" and ledger.get("flying").energy_kwh == 3e-6
    assert ledger.get("finishing").status.value == "completed" and ledger.get("finishing").metrics["accuracy"] == 0.9
    assert ledger.get("unsaved").params == {"x": 1.0} and ledger.get("unsaved").energy_kwh == 2e-6
    assert ledger.trials_kwh == 9e-6


def test_no_spool_folder_no_write_and_a_broken_file_is_skipped(tmp_path: Path):
    write_last_word(str(tmp_path / "missing"), "t", {"energy_kwh": 1.0})  # another node: nothing, no error
    assert not (tmp_path / "missing").exists()
    spool = tmp_path / "inflight"
    spool.mkdir()
    (spool / "bad.json").write_text("{half")
    write_last_word(str(spool), "good", {"energy_kwh": 1.0})
    assert list(read_last_words(spool)) == ["good"]
