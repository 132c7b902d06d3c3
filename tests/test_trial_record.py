"""One trial, one record: what the searcher and the stoppers learn is what the ledger booked."""

from __future__ import annotations

import json

import pytest

from tuner.config import FloatRange
from tuner.search import Outcome, RandomSearcher
from tuner.search.early_stopping import ParetoEarlyStopping
from tuner.study.budget import BudgetGate, StudyStopper
from tuner.study.ledger import EnergyLedger
from tuner.study.record import (
    Report,
    TrialRecord,
    TrialReport,
    TrialStatus,
    final_result,
    running_result,
)


class _Recording(RandomSearcher):
    """A real searcher that also keeps every outcome it was told."""

    def __init__(self) -> None:
        super().__init__({"x": FloatRange(type="float", low=0.0, high=1.0)}, metric="accuracy", seed=0)
        self.told: list[Outcome] = []

    def tell(self, params, outcome: Outcome) -> None:
        self.told.append(outcome)


def _paused_and_restarted_trial() -> list[dict]:
    """Ray results of one trial that ran twice (paused after its first run): each process
    meters from zero, so the last result holds only the second run's energy."""
    return [
        {"energy_kwh": 2e-6, "accuracy": 0.5, "greentune_status": "running", "greentune_segment": "run-1",
         "greentune_epochs": 1, "training_iteration": 1},
        {"energy_kwh": 4e-6, "accuracy": 0.6, "greentune_status": "running", "greentune_segment": "run-1",
         "greentune_epochs": 2, "training_iteration": 2},
        {"energy_kwh": 1e-6, "accuracy": 0.7, "greentune_status": "running", "greentune_segment": "run-2",
         "greentune_epochs": 3, "training_iteration": 3},
        {"energy_kwh": 3e-6, "accuracy": 0.8, "greentune_status": "completed", "greentune_segment": "run-2",
         "greentune_epochs": 4, "training_iteration": 4},
    ]


def test_a_restarted_trial_tells_the_searcher_its_whole_energy_not_its_last_run():
    ledger = EnergyLedger(1.0, watts_per_core=10.0, metric="accuracy")
    searcher = _Recording()
    gate = BudgetGate(searcher, ledger, max_trials=None)
    stopper = StudyStopper(ledger)
    assert isinstance(gate.suggest("t"), dict)
    results = _paused_and_restarted_trial()
    for result in results:
        assert not stopper("t", result)  # Ray asks the stopper about every result
    gate.on_trial_complete("t", results[-1])
    assert ledger.get("t").energy_kwh == pytest.approx(7e-6)  # 4 (first run) + 3 (second run)
    assert searcher.told == [Outcome("completed", 0.8, ledger.get("t").energy_kwh)]


def test_early_stopping_reads_a_restarted_trials_whole_energy():
    ledger = EnergyLedger(1.0, watts_per_core=10.0, metric="accuracy")
    stopping = ParetoEarlyStopping("max", horizon_kwh=1.0)
    stopper = StudyStopper(ledger, stopping)
    ledger.start("t", {})
    for result in _paused_and_restarted_trial()[:3]:
        stopper("t", result)
    assert [kwh for kwh, _ in stopping.reports["t"]] == pytest.approx([2e-6, 4e-6, 5e-6])  # never back to 1e-6


def test_an_error_from_ray_is_told_as_a_failure_with_the_ledgers_error():
    ledger = EnergyLedger(1.0, watts_per_core=10.0, metric="accuracy")
    searcher = _Recording()
    gate = BudgetGate(searcher, ledger, max_trials=None)
    gate.suggest("t")
    ledger.fail("t", "worker died")
    gate.on_trial_complete("t", None, error=True)
    assert searcher.told == [Outcome("failed", error="worker died")]


def test_records_change_only_through_the_ledger():
    ledger = EnergyLedger(1.0, watts_per_core=10.0, metric="accuracy")
    ledger.start("t", {"x": 1})
    record = ledger.get("t")
    with pytest.raises(AttributeError):
        record.status = TrialStatus.COMPLETED  # type: ignore[misc]
    ledger.pause("t", 1)
    assert ledger.get("t").status is TrialStatus.PAUSED and record.status is TrialStatus.PENDING
    with pytest.raises(TypeError):
        ledger.records["u"] = record  # type: ignore[index]


def test_the_worker_result_round_trips_into_a_report():
    beat = running_result({"accuracy": 0.5}, {"energy_kwh": 1e-6, "energy_source": "cpu-time"}, 2,
                          [(2, {"accuracy": 0.5}, 1700000000.5)], "seg", checkpointed=True)
    report = TrialReport.from_result(beat)
    assert report.status is TrialStatus.RUNNING and report.energy_kwh == 1e-6 and report.checkpointed
    assert report.metrics == {"accuracy": 0.5} and report.info == {"energy_source": "cpu-time"}
    assert report.history == (Report(2, {"accuracy": 0.5}, 1700000000.5),) and report.n_reports == 2
    final = TrialReport.from_result(final_result({}, {"energy_kwh": 2e-6}, 2, [], "seg", "node-1", "boom"))
    assert final.status is TrialStatus.FAILED and final.error == "boom" and final.info["node"] == "node-1"


def test_a_ledger_json_from_before_the_record_had_error_and_n_reports_still_loads():
    old = {"trial_id": "t", "params": {"x": 1}, "status": "failed", "energy_kwh": 1e-6,
           "info": {"greentune_error": "boom", "greentune_epochs": 3, "energy_source": "cpu-time"},
           "energy_timeline": [[1.0, 1e-6]]}
    record = TrialRecord.from_json(json.loads(json.dumps(old)))
    assert record.status is TrialStatus.FAILED and record.error == "boom" and record.n_reports == 3
    assert record.info == {"energy_source": "cpu-time"} and record.energy_timeline == ((1.0, 1e-6),)
    assert TrialRecord.from_json(record.to_json()) == record


def test_an_early_stopped_trial_keeps_the_last_epoch_it_reported_in_its_row():
    # The objective reports accuracy and epoch every epoch; early stopping ends it after
    # epoch 11, so no final report ever comes: its row must still say epoch 11, as the
    # per-epoch history in MLflow does.
    from tuner.study.files import trials_frame

    ledger = EnergyLedger(1.0, watts_per_core=10.0, metric="accuracy")
    ledger.start("t", {"x": 0.5})
    for epoch in range(1, 12):
        latest = {"accuracy": 0.5 + epoch / 100, "epoch": float(epoch)}
        ledger.observe("t", running_result(latest, {"energy_kwh": epoch * 1e-6}, epoch, [(epoch, latest)],
                                           "seg", checkpointed=False))
    ledger.stop("t")
    ledger.start("u", {"x": 0.1})  # and one that completed, for contrast
    ledger.observe("u", final_result({"accuracy": 0.9, "epoch": 20.0}, {"energy_kwh": 2e-5}, 20, [], "seg", "n", None))
    table = trials_frame(ledger, ["x"], "accuracy").set_index("trial_id")
    assert table.loc["t", "status"] == "stopped" and table.loc["t", "epoch"] == 11
    assert table.loc["t", "accuracy"] == pytest.approx(0.61) and table.loc["t", "n_reports"] == 11
    assert table.loc["u", "epoch"] == 20


def test_a_metric_a_later_heartbeat_lacks_keeps_its_last_value():
    ledger = EnergyLedger(1.0, watts_per_core=10.0, metric="accuracy")
    ledger.start("t", {})
    ledger.observe("t", running_result({"accuracy": 0.5, "step": 100.0}, {"energy_kwh": 1e-6}, 1, [], "s1", False))
    # restarted after a pause: the new process has reported nothing but accuracy yet
    ledger.observe("t", running_result({"accuracy": 0.6}, {"energy_kwh": 1e-6}, 2, [], "s2", False))
    assert ledger.get("t").metrics == {"accuracy": 0.6, "step": 100.0}
