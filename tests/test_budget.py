"""The energy ledger: what counts, when a trial may start, when the budget is spent."""

from __future__ import annotations

import dataclasses
import logging
import re
import time

import pytest
from ray.tune.search import Searcher

from tuner.config import FloatRange, IntRange
from tuner.energy import J_PER_KWH
from tuner.search import GridSearcher, RandomSearcher
from tuner.search.base import GreentuneSearcher, Outcome
from tuner.study.budget import BudgetGate, StudyStopper, budget_shortfall
from tuner.study.ledger import EnergyLedger


def _ledger(budget=1.0, overhead_s=0.0):
    return EnergyLedger(budget, watts_per_core=10.0, metric="accuracy", overhead_cpu_s=lambda: overhead_s)


def _beat(energy, status="running", **extra):
    return {"energy_kwh": energy, "greentune_status": status, **extra}


def test_live_heartbeats_replace_and_finals_freeze():
    ledger = _ledger()
    ledger.start("t1", {"x": 1})
    ledger.observe("t1", _beat(0.1))
    ledger.observe("t1", _beat(0.2))
    assert ledger.trials_kwh == 0.2
    ledger.observe("t1", _beat(0.3, "completed", accuracy=0.9))
    ledger.observe("t1", _beat(0.3, "completed", accuracy=0.9))  # duplicate final
    ledger.observe("t1", _beat(0.9))  # a late heartbeat cannot reopen a final entry
    assert ledger.trials_kwh == 0.3
    assert ledger.records["t1"].metrics["accuracy"] == 0.9


def test_overhead_counts_against_the_budget():
    ledger = _ledger(budget=1.0, overhead_s=3600.0)  # 1 h of CPU at 10 W = 0.01 kWh
    assert ledger.overhead_kwh == 3600 * 10 / J_PER_KWH
    ledger.observe("t", _beat(0.99, "completed", accuracy=1))
    assert ledger.exhausted


def test_no_trial_starts_when_the_median_does_not_fit():
    ledger = _ledger(budget=1.0)
    assert ledger.can_start_trial()  # nothing known yet
    for i, e in enumerate([0.2, 0.3, 0.25]):
        ledger.observe(f"t{i}", _beat(e, "completed", accuracy=0.5))
    assert ledger.expected_trial_kwh == 0.25
    assert ledger.can_start_trial()  # 0.75 spent + 0.25 expected fits exactly
    ledger.start("t3", {})  # a pending trial is charged the median
    assert not ledger.can_start_trial()


def test_the_next_search_step_is_charged_before_a_trial_starts():
    # the last BO step cost 360 CPU-seconds at 10 W: 0.001 kWh
    ledger = EnergyLedger(0.01, 10.0, "accuracy", next_step_cpu_s=lambda: 360.0)
    ledger.observe("a", _beat(0.004, "completed", accuracy=0.5))
    assert ledger.can_start_trial()  # 0.004 + 0.001 + 0.004 <= 0.01
    ledger.observe("b", _beat(0.0045, "completed", accuracy=0.5))
    assert not ledger.can_start_trial()  # 0.0085 + 0.001 + 0.00425 > 0.01


def test_failed_trials_count_energy_but_not_the_median():
    ledger = _ledger()
    ledger.observe("ok", _beat(0.1, "completed", accuracy=0.5))
    ledger.observe("bad", _beat(0.4, "failed", greentune_error="boom"))
    assert ledger.trials_kwh == 0.5
    assert ledger.expected_trial_kwh == 0.1


def test_crash_keeps_last_live_energy_and_close_marks_stopped():
    ledger = _ledger(budget=0.5)
    ledger.observe("a", _beat(0.2))
    ledger.fail("a", "actor died")
    ledger.observe("b", _beat(0.4))
    assert ledger.should_stop()
    closed = ledger.close_unfinished()
    assert [e.trial_id for e in closed] == ["b"]
    assert ledger.records["a"].status == "failed" and ledger.records["a"].energy_kwh == 0.2
    assert ledger.records["b"].status == "stopped_by_budget"
    assert ledger.trials_kwh == pytest.approx(0.6)


def test_stopper_fires_when_the_ledger_reaches_the_budget():
    ledger = _ledger(budget=0.5)
    stopper = StudyStopper(ledger)
    assert not stopper("a", _beat(0.3))
    assert not stopper.stop_all()
    assert stopper("b", _beat(0.25))
    assert stopper.stop_all()
    assert ledger.stopped_at is not None
    assert not ledger.can_start_trial()


def test_stopper_looks_one_report_interval_ahead():
    # 3.6 MW for 2 s is 2 kWh: the next heartbeat would pass the 10 kWh budget.
    ledger = _ledger(budget=10.0)
    stopper = StudyStopper(ledger)
    assert not stopper("a", _beat(7.0, avg_power_w=1.0))
    assert stopper("a", _beat(8.5, avg_power_w=3.6e6))
    assert not ledger.exhausted  # stopped before the budget was reached


def test_gate_waits_while_trials_run_and_finishes_when_idle():
    ledger = _ledger(budget=1.0)
    inner = RandomSearcher({"x": FloatRange(type="float", low=0, high=1)}, seed=0)
    gate = BudgetGate(inner, ledger, max_trials=None)
    assert isinstance(gate.suggest("a"), dict)
    assert isinstance(gate.suggest("b"), dict)  # no energy known yet: both may start
    ledger.observe("a", _beat(0.3, "completed", accuracy=0.5))
    ledger.observe("b", _beat(0.1))
    # 0.3 spent + b charged the 0.3 median + 0.3 for a new trial = 0.9 <= 1
    assert isinstance(gate.suggest("c"), dict)
    # c is charged 0.3 too: 1.2 > 1, and b and c still run, so wait
    assert gate.suggest("d") is None
    ledger.observe("b", _beat(0.3, "completed", accuracy=0.5))
    ledger.observe("c", _beat(0.3, "completed", accuracy=0.5))
    assert gate.suggest("e") == Searcher.FINISHED
    # three trials of 0.3 kWh: the model prices the next one at about 0.3, with 0.1 left
    assert gate.finish_reason.startswith("energy budget cannot fit the next proposed trial (predicted 0.3")
    assert gate.finish_reason.endswith(", 0.1 kWh left)")


def test_gate_stops_at_max_trials():
    ledger = _ledger(budget=1.0)
    gate = BudgetGate(RandomSearcher({"x": FloatRange(type="float", low=0, high=1)}), ledger, max_trials=2)
    assert isinstance(gate.suggest("a"), dict) and isinstance(gate.suggest("b"), dict)
    assert gate.suggest("c") == Searcher.FINISHED
    assert gate.finish_reason == "max_trials reached"


# --------------------------------------------------------------------------- fail fast


def _end(ledger, trial_id, status, at, error=None):
    """Book a final report, then date its end (the order trials ended in is what counts)."""
    extra = {"greentune_error": error} if error else {"accuracy": 0.5}
    ledger.observe(trial_id, _beat(0.01, status, **extra))
    ledger._records[trial_id] = dataclasses.replace(ledger.records[trial_id], ended_at=at)


def test_failure_streak_counts_failures_since_the_last_trial_that_did_not_fail():
    ledger = _ledger()
    assert ledger.failure_streak() == []
    _end(ledger, "a", "failed", 1.0, "objective raised TypeError: boom\nTraceback ...")
    _end(ledger, "b", "completed", 2.0)
    _end(ledger, "d", "failed", 4.0, "objective raised KeyError: 'x'\nTraceback ...")
    _end(ledger, "c", "failed", 3.0, "objective raised KeyError: 'x'\nTraceback ...")  # started later, ended first
    ledger.start("e", {})  # still running: not part of any streak
    assert [r.trial_id for r in ledger.failure_streak()] == ["c", "d"]
    assert [r.trial_id for r in ledger.failure_streak(since=3.5)] == ["d"]  # a resumed driver counts afresh


def _failing_gate(limit):
    ledger = _ledger(budget=1.0)
    gate = BudgetGate(RandomSearcher({"x": FloatRange(type="float", low=0, high=1)}, seed=0), ledger,
                      max_trials=None, max_consecutive_failures=limit)
    return ledger, gate


def test_gate_stops_launching_after_n_consecutive_failures():
    ledger, gate = _failing_gate(3)
    for i, trial in enumerate("abc"):
        assert isinstance(gate.suggest(trial), dict)
        _end(ledger, trial, "failed", time.time() + i, f"objective raised TypeError: bad {trial}\n  File ...")
    assert gate.suggest("d") == Searcher.FINISHED
    assert gate.finish_reason == "3 consecutive trial failures: objective raised TypeError: bad c"
    assert gate.consecutive_failures == 3


def test_a_completed_trial_resets_the_count_and_zero_or_none_disables_it():
    ledger, gate = _failing_gate(2)
    for i, (trial, status) in enumerate(zip("abc", ["failed", "completed", "failed"], strict=True)):
        assert isinstance(gate.suggest(trial), dict)
        _end(ledger, trial, status, time.time() + i, "boom" if status == "failed" else None)
    assert isinstance(gate.suggest("d"), dict)
    assert gate.consecutive_failures is None
    for limit in (0, None):
        ledger, gate = _failing_gate(limit)
        for i, trial in enumerate("abcdefgh"):
            assert isinstance(gate.suggest(trial), dict)
            _end(ledger, trial, "failed", time.time() + i, "boom")


# --------------------------------------------------------------------------- a budget smaller than one trial


def _cfg(**fields):
    from tuner.config import load_config

    return load_config({"objective": "tests.objectives_for_tests:quadratic", "budget_kwh": 1.0,
                        "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
                        "energy": {"watts_per_core": 10.0}, **fields})


def test_no_warning_when_the_budget_fits_a_trial():
    cfg = _cfg(budget_kwh=0.01, expected_trial_s=60)
    assert budget_shortfall(cfg, EnergyLedger(cfg.budget_kwh, 10.0, "accuracy")) is None


def test_a_budget_under_one_report_interval_of_one_trial_is_flagged():
    # 2 CPUs x 10 W x 2 s (report interval) = 40 J = 1.11e-5 kWh: gone before the budget can stop the trial
    cfg = _cfg(budget_kwh=1e-5, resources_per_trial={"cpu": 2})
    message = budget_shortfall(cfg, EnergyLedger(cfg.budget_kwh, 10.0, "accuracy"))
    assert message is not None and "\n" not in message
    assert "budget_kwh 1e-05 kWh is less than one trial is expected to spend (1.11e-05 kWh:" in message
    assert "2 CPU x 10 W x 2 s, one report interval" in message


def test_expected_trial_s_sets_the_estimate():
    cfg = _cfg(budget_kwh=1e-4, expected_trial_s=60)  # 1 CPU x 10 W x 60 s = 1.67e-4 kWh
    message = budget_shortfall(cfg, EnergyLedger(cfg.budget_kwh, 10.0, "accuracy"))
    assert "(0.000167 kWh: 1 CPU x 10 W x 60 s expected_trial_s)" in message


def test_a_resumed_study_compares_what_is_left_with_its_median_trial():
    cfg = _cfg(budget_kwh=1.0)
    ledger = EnergyLedger(cfg.budget_kwh, 10.0, "accuracy")
    ledger.observe("a", _beat(0.3, "completed", accuracy=0.5))
    assert budget_shortfall(cfg, ledger) is None
    ledger.observe("b", _beat(0.5, "completed", accuracy=0.5))  # 0.2 left, median 0.4
    assert "0.2 kWh left of budget_kwh is less than the median completed trial (0.4 kWh)" in budget_shortfall(
        cfg, ledger)


# --------------------------------------------------------------------------- admission on the proposal's own energy

KWH_PER_EPOCH = 0.164  # the issue's study: a median trial of 1.64 kWh is 10 epochs
EPOCHS = {"epochs": IntRange(type="int", low=1, high=100, log=True)}


class Proposals(GreentuneSearcher):
    """Proposes the given epochs in order, and cannot offer anything cheaper (the base default)."""

    def __init__(self, epochs: list[int]) -> None:
        super().__init__(EPOCHS, seed=0)
        self.queue = list(epochs)

    def ask(self):
        return {"epochs": self.queue.pop(0)} if self.queue else Searcher.FINISHED

    def tell(self, params, outcome: Outcome) -> None:
        pass


def _run(gate: BudgetGate, ledger: EnergyLedger, trial_id: str, kwh: float | None = None) -> dict:
    """Admit one trial through the gate and, unless ``kwh`` is None, complete it at that energy."""
    params = gate.suggest(trial_id)
    assert isinstance(params, dict), params
    if kwh is not None:
        result = _beat(kwh, "completed", accuracy=0.5)
        ledger.observe(trial_id, result)
        gate.on_trial_complete(trial_id, result)
    return params


def _issue_study(searcher: GreentuneSearcher) -> tuple[BudgetGate, EnergyLedger]:
    """5, 10 and 20 epochs done (0.82, 1.64, 3.28 kWh: median 1.64), 6.63 kWh left."""
    ledger = EnergyLedger(5.74 + 6.63, watts_per_core=10.0, metric="accuracy")
    gate = BudgetGate(searcher, ledger, max_trials=None)
    for i in range(3):
        params = _run(gate, ledger, f"t{i}")
        result = _beat(KWH_PER_EPOCH * params["epochs"], "completed", accuracy=0.5)
        ledger.observe(f"t{i}", result)
        gate.on_trial_complete(f"t{i}", result)
    assert ledger.expected_trial_kwh == pytest.approx(1.64)
    assert ledger.room_kwh() == pytest.approx(6.63)
    return gate, ledger


def test_a_proposal_is_admitted_on_its_own_predicted_energy_not_the_median(caplog):
    # The issue's study: 6.63 kWh left, the median trial 1.64 kWh, and the next proposal
    # (76 epochs) costs 12.45 kWh. The median fitted, so it was admitted: 147 % of the budget.
    gate, ledger = _issue_study(Proposals([5, 10, 20, 76]))
    with caplog.at_level(logging.WARNING, logger="tuner"):
        assert gate.suggest("t3") == Searcher.FINISHED
    assert "t3" not in ledger.records
    reason = gate.finish_reason
    match = re.fullmatch(r"energy budget cannot fit the next proposed trial \(predicted ([\d.]+) kWh "
                         r"\[upper ([\d.]+)\], ([\d.]+) kWh left\)", reason)
    assert match, reason
    predicted, upper, left = map(float, match.groups())
    assert upper > left == pytest.approx(6.63) and upper >= predicted
    assert "does not fit the energy budget" in caplog.text and "epochs=76" in caplog.text


@pytest.mark.parametrize("searcher", [GridSearcher(EPOCHS, seed=3, resolution=12), RandomSearcher(EPOCHS, seed=0)],
                         ids=["grid", "random"])
def test_a_proposal_that_does_not_fit_is_replaced_by_an_affordable_one(searcher, caplog):
    ledger = EnergyLedger(1e9, watts_per_core=10.0, metric="accuracy")  # room for the first three
    gate = BudgetGate(searcher, ledger, max_trials=None)

    def finish(trial_id: str, params: dict) -> None:
        result = _beat(KWH_PER_EPOCH * params["epochs"], "completed", accuracy=0.5)
        ledger.observe(trial_id, result)
        gate.on_trial_complete(trial_id, result)

    for i in range(3):
        finish(f"t{i}", _run(gate, ledger, f"t{i}"))
    ledger.budget_kwh = ledger.total_kwh + 2.0  # 2 kWh left: about 12 epochs at most
    with caplog.at_level(logging.WARNING, logger="tuner"):
        for i in range(3, 30):
            params = gate.suggest(f"t{i}")
            if params == Searcher.FINISHED:
                break
            upper = ledger.records[f"t{i}"].info["energy_predicted_upper_kwh"]
            assert upper <= ledger.budget_kwh - ledger.trials_kwh + 1e-12  # admitted on a band that fits
            finish(f"t{i}", params)
    assert "running an affordable one instead" in caplog.text  # a dear proposal was replaced
    assert len(ledger.completed()) > 4
    assert ledger.total_kwh <= ledger.budget_kwh
    assert gate.finish_reason.startswith("energy budget cannot fit")


def test_a_proposal_waits_while_trials_run_then_the_study_ends_with_the_figures():
    gate, ledger = _issue_study(Proposals([5, 10, 20, 3, 76]))
    _run(gate, ledger, "t3")  # 3 epochs: predicted well within the 6.63 kWh left
    assert gate.suggest("t4") is None  # 76 epochs does not fit; t3 still runs and may leave room
    assert gate.suggest("t5") is None  # offered again under Ray's next id, still waiting
    result = _beat(KWH_PER_EPOCH * 3, "completed", accuracy=0.5)
    ledger.observe("t3", result)
    gate.on_trial_complete("t3", result)
    assert gate.suggest("t6") == Searcher.FINISHED
    assert gate.finish_reason.startswith("energy budget cannot fit the next proposed trial (predicted ")
    assert set(ledger.records) == {"t0", "t1", "t2", "t3"}


def test_a_running_trial_is_reserved_its_upper_band():
    from tuner.search.energy_model import EnergyPrediction

    ledger = _ledger(budget=10.0)
    ledger.start("a", {}, EnergyPrediction(3.0, 6.0, 0.9, 5))
    ledger.observe("a", _beat(1.0))
    assert ledger.room_kwh() == pytest.approx(4.0)  # 10 - max(1, 6)
    assert ledger.can_start_trial(EnergyPrediction(2.0, 4.0, 0.9, 5))
    assert not ledger.can_start_trial(EnergyPrediction(2.0, 4.1, 0.9, 5))


def test_the_look_ahead_lets_a_trial_finish_that_its_admission_made_room_for():
    # The issue's lone trial: at 80.6 % of the budget, one more interval at its mean power
    # would cross it, but it was going to finish at 86 %. Admitted at an upper band of
    # 8.8 kWh (which the budget had room for), it runs on.
    from tuner.search.energy_model import EnergyPrediction

    ledger = _ledger(budget=10.0)
    stopper = StudyStopper(ledger)
    ledger.start("a", {}, EnergyPrediction(8.0, 8.8, 0.9, 5))
    assert not stopper("a", _beat(8.06, avg_power_w=3.6e6))  # 2 kWh per 2 s interval
    assert not ledger.should_stop()
    assert not stopper("a", _beat(8.6, "completed", accuracy=0.5))
    assert ledger.total_kwh == pytest.approx(8.6)
    # past its upper band the prediction was wrong: the interval rule holds again
    ledger.start("b", {}, EnergyPrediction(0.5, 0.8, 0.9, 5))
    assert stopper("b", _beat(0.9, avg_power_w=3.6e6))
    assert ledger.total_kwh < ledger.budget_kwh


def test_a_power_that_is_not_a_number_does_not_blind_the_look_ahead():
    ledger = _ledger(budget=10.0)
    stopper = StudyStopper(ledger)
    assert not stopper("a", _beat(5.0, avg_power_w=float("nan")))
    assert stopper("b", _beat(4.5, avg_power_w=3.6e6))


def test_ax_replaces_a_proposal_by_an_affordable_unseen_draw_and_abandons_the_first():
    from tuner.search.ax_searcher import AxSearcher

    searcher = AxSearcher(EPOCHS, seed=0, method="sobol")
    proposal = searcher.suggest("a")
    replacement = searcher.suggest_within("a", lambda candidates: [c["epochs"] <= 3 for c in candidates])
    assert replacement is not None and replacement["epochs"] <= 3
    if proposal["epochs"] > 3:
        assert replacement != proposal
    searcher.complete("a", Outcome("completed", 0.5, KWH_PER_EPOCH * replacement["epochs"]))
    from tuner.search import ax_compat

    statuses = sorted(t.status.name for t in ax_compat.experiment(searcher.client).trials.values())
    assert statuses == ["ABANDONED", "COMPLETED"]
    assert searcher.suggest_within("b", lambda candidates: [False] * len(candidates)) is None  # nothing proposed yet


def test_the_energy_model_optimises_its_kernel_every_third_trial_and_keeps_it_in_between():
    """Between optimisations the GP keeps its hyperparameters and only takes in the new
    trials (and recalibrates its band); every third trial they are optimised again."""
    import numpy as np

    from tuner.search.energy_model import REOPTIMISE_EVERY, EnergyModel

    space = {"epochs": IntRange(type="int", low=1, high=100), "lr": FloatRange(type="float", low=1e-4, high=1e-1, log=True)}
    rng = np.random.default_rng(0)
    params = [{"epochs": int(rng.integers(1, 101)), "lr": float(10 ** rng.uniform(-4, -1))} for _ in range(12)]
    kwh = [1e-3 * p["epochs"] * float(np.exp(rng.normal(0, 0.05))) for p in params]
    model = EnergyModel(space)
    assert REOPTIMISE_EVERY == 3
    thetas = []
    for n in range(6, 12):
        model.fit(params[:n], kwh[:n])
        thetas.append(model._gp.kernel_.theta.copy())  # noqa: SLF001
    kept = [bool(np.array_equal(a, b)) for a, b in zip(thetas, thetas[1:], strict=False)]
    assert kept == [True, True, False, True, True]  # optimised at 6 and 9 trials; 7, 8, 10, 11 keep them
    held = model.predict(params[11])
    assert held is not None and held.upper_kwh > held.kwh  # a band still, recalibrated on 11 trials


def test_an_affordable_draw_is_charged_to_the_tuners_overhead_once():
    """The replacement's CPU counts in the overhead once: the searcher books it, the gate does not again."""
    calls: list[float] = []

    class SlowDraws(RandomSearcher):
        def ask_within(self, previous, affordable):
            start = time.process_time()
            while time.process_time() - start < 0.05:  # a draw that costs CPU
                pass
            calls.append(time.process_time() - start)
            return super().ask_within(previous, affordable)

    searcher = SlowDraws(EPOCHS, seed=0)
    ledger = EnergyLedger(1e9, watts_per_core=10.0, metric="accuracy")
    gate = BudgetGate(searcher, ledger, max_trials=None)
    for i in range(3):
        params = gate.suggest(f"t{i}")
        result = _beat(KWH_PER_EPOCH * params["epochs"], "completed", accuracy=0.5)
        ledger.observe(f"t{i}", result)
        gate.on_trial_complete(f"t{i}", result)
    gate._refit()
    proposal = searcher.suggest("t3")
    prediction = gate._predict(proposal)
    before = searcher.cpu_seconds
    gate._cheaper("t3", proposal, prediction, room=prediction.upper_kwh / 2)
    charged = searcher.cpu_seconds - before
    assert len(calls) == 1 and calls[0] <= charged < 1.5 * calls[0], (charged, calls)
