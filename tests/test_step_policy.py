"""The BO step's spend in proportion to a trial's (tuner.search.step_policy), and the batches it makes."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

from tuner.config import FloatRange, IntRange
from tuner.search.base import Outcome
from tuner.search.energy_model import EnergyPrediction
from tuner.search.step_policy import (
    FULL,
    LEAN,
    MAX_BATCH,
    TARGET_SHARE,
    UPKEEP_SHARE,
    StepPolicy,
    choose,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GREENTUNE_DATA") or ROOT.parent / "shared" / "data")
KWH_PER_CPU_S = 10.0 / 3.6e6  # the driver's CPU at 10 W per core

SPACE = {"x": FloatRange(type="float", low=0, high=1), "y": FloatRange(type="float", low=0, high=1),
         "epochs": IntRange(type="int", low=1, high=20, log=True)}


def test_gpu_scale_trials_always_get_the_full_step():
    """Trials of 0.01-1 kWh against a step of a few CPU-seconds: the full step, one proposal, whatever the step."""
    for trial_kwh in (0.01, 0.1, 1.0):
        for step_cpu_s in (0.5, 1.0, 5.0, 30.0):
            assert choose(step_cpu_s * KWH_PER_CPU_S, None, trial_kwh) == choose(None, None, None)
            assert choose(step_cpu_s * KWH_PER_CPU_S, None, trial_kwh).tier is FULL
    policy = StepPolicy(watts_per_core=10.0)
    policy.observe_step(FULL, 3.0)
    for kwh in (0.02, 0.05, 0.4, 0.9):
        policy.observe_trial(kwh)
    assert policy.choose().tier is FULL and policy.choose().batch == 1


@pytest.mark.skipif(not (DATA / "zeus" / "summary_train.csv").is_file(),
                    reason=f"Zeus traces not found under {DATA / 'zeus'} (set GREENTUNE_DATA)")
def test_every_zeus_trace_problem_is_searched_with_the_full_step():
    """A step of 2 CPU-seconds at 10 W per core (steps there measured 0.7-1.6 CPU-s on a loaded
    machine) stays under TARGET_SHARE of the tenth-percentile trial of every one of the 24 problems'
    grids, so a study whose median trial is not among its grid's cheapest tenth is searched with the
    full step, and the search quality zeus_traces.py measured is the full step's."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import zeus_traces as z

    tenth = {}
    for name in z.ALL_PROBLEMS:
        problem = z.load_problem(DATA, name)
        energies = sorted(problem.energy_kwh(*config) for config in problem.grid_configs())
        tenth[name] = energies[len(energies) // 10]
    worst = min(tenth, key=tenth.get)
    step_kwh = 2.0 * KWH_PER_CPU_S
    assert step_kwh <= TARGET_SHARE * tenth[worst], (worst, tenth[worst])
    assert choose(step_kwh, None, tenth[worst]).tier is FULL
    assert choose(step_kwh, None, tenth[worst]).batch == 1


def test_cpu_second_trials_get_a_lean_batched_step_and_longer_ones_the_full_step():
    step = 0.7 * KWH_PER_CPU_S  # the quickstart's full step
    # the quickstart: a median trial of 1.5 CPU-s; the full step would be half of it
    cheap = choose(step, None, 1.5 * KWH_PER_CPU_S)
    assert cheap.tier is LEAN and cheap.batch == MAX_BATCH
    # a lean step measured at 0.1 CPU-s against trials of 1 CPU-min: a batch that brings it to TARGET_SHARE
    middle = choose(2.0 * KWH_PER_CPU_S, 0.1 * KWH_PER_CPU_S, 1.5 * KWH_PER_CPU_S * 10)
    assert middle.tier is LEAN and middle.batch == math.ceil(0.1 / (TARGET_SHARE * 15.0))
    # trials of 10 CPU-s: the step would be 7 % of one, so it is lean; at 40 CPU-s (1.75 %) it is full
    assert choose(step, None, 10 * KWH_PER_CPU_S).tier is LEAN
    assert choose(step, None, 40 * KWH_PER_CPU_S).tier is FULL
    # nothing known yet (no trial completed, no BO step measured): the full step
    assert choose(None, None, 1e-6).tier is FULL and choose(step, None, None).tier is FULL


def _searcher(seed=0, step_cpu_s=1.0, **kwargs):
    from tuner.search.ax_searcher import AxSearcher

    return AxSearcher(SPACE, metric="accuracy", mode="max", seed=seed, initial_trials=4,
                      step_policy=StepPolicy(step_cpu_s=step_cpu_s), **kwargs)


def _outcome(params, scale=1e-6):
    """A cheap CPU trial: about a CPU-second (a few 1e-6 kWh)."""
    accuracy = 1 - math.exp(-params["epochs"] / 4) - 0.2 * (params["x"] - 0.3) ** 2
    return Outcome("completed", accuracy, scale * params["epochs"] * (1 + params["y"]))


def _statuses(searcher):
    from tuner.search import ax_compat

    counts: dict[str, int] = {}
    for trial in ax_compat.experiment(searcher.client).trials.values():
        counts[trial.status.name] = counts.get(trial.status.name, 0) + 1
    return counts


def _initialise(searcher, history=None):
    """Ax's initial design, told, then the first BO step (the full one, which measures a step)."""
    for _ in range(5):
        params = searcher.ask()
        outcome = _outcome(params)
        searcher.tell(params, outcome)
        if history is not None:
            history.append((params, outcome))


def test_a_lean_step_hands_out_a_batch_over_the_next_asks_each_pending_in_ax():
    searcher = _searcher()
    _initialise(searcher)
    assert searcher.policy.steps == {"full": 1}
    running = searcher.ask()  # still running while the next step is taken: pending for it
    assert searcher.policy.steps == {"full": 1, "lean": 1} and len(searcher._queue) == MAX_BATCH - 1
    assert _statuses(searcher)["RUNNING"] == MAX_BATCH  # Ax holds the whole batch as pending
    batch = [running] + [searcher.ask() for _ in range(MAX_BATCH - 1)]
    assert searcher.policy.steps == {"full": 1, "lean": 1}  # handed out without another step
    assert searcher.expected_step_cpu_seconds() > 0  # the queue is empty: the next ask is a step
    assert len({tuple(sorted(p.items())) for p in batch}) == MAX_BATCH
    for params in batch:
        searcher.tell(params, _outcome(params))
    nxt = searcher.ask()
    assert searcher.policy.steps["lean"] == 2 and nxt not in batch
    assert searcher._fits.kept >= 1  # the lean step kept the GP's hyperparameters


def test_gpu_scale_trials_keep_one_full_step_per_proposal():
    searcher = _searcher()
    for _ in range(8):
        params = searcher.ask()
        searcher.tell(params, _outcome(params, scale=0.05))
    assert searcher.policy.steps == {"full": 4} and not searcher._queue and searcher._fits.kept == 0


def test_a_seeded_lean_search_is_reproducible():
    def run(seed):
        searcher = _searcher(seed=seed)
        seen = []
        for _ in range(13):
            params = searcher.ask()
            seen.append(params)
            searcher.tell(params, _outcome(params))
        assert searcher.policy.steps.get("lean", 0) >= 2
        return seen

    first = run(3)
    assert run(3) == first
    assert run(4) != first


def test_a_queued_proposal_the_budget_cannot_fit_is_dropped_not_run():
    """The gate prices each proposal when it is handed out, not when the batch was made: a queued
    one that no longer fits is replaced by an affordable draw and abandoned in Ax."""
    from tuner.search import ax_compat
    from tuner.study.budget import BudgetGate
    from tuner.study.ledger import EnergyLedger

    class Priced:  # an energy model that prices one configuration out of the budget
        fitted, space, level = True, SPACE, 0.9
        dear: tuple = ()

        def fit(self, params, energies):
            pass

        def upper(self, params):
            return 1e3 if tuple(sorted(params.items())) == self.dear else 1e-6

        def predict(self, params):
            return EnergyPrediction(self.upper(params) / 2, self.upper(params), 0.9, 5)

        def predict_upper(self, candidates):
            return [self.upper(c) for c in candidates]

    searcher = _searcher()
    model = Priced()
    ledger = EnergyLedger(1.0, watts_per_core=10.0, metric="accuracy")
    gate = BudgetGate(searcher, ledger, max_trials=None, energy_model=model)

    def finish(trial_id, params):
        result = {"energy_kwh": _outcome(params).energy_kwh, "greentune_status": "completed",
                  "accuracy": _outcome(params).metric}
        ledger.observe(trial_id, result)
        gate.on_trial_complete(trial_id, result)

    for i in range(5):
        finish(f"t{i}", gate.suggest(f"t{i}"))
    first = gate.suggest("b0")  # a lean step: the rest of its batch queued
    assert len(searcher._queue) == MAX_BATCH - 1
    index, dear = searcher._queue[0]
    model.dear = tuple(sorted(dear.items()))
    second = gate.suggest("b1")
    assert isinstance(second, dict) and second != dear and searcher.affordable_draws == 1
    trials = ax_compat.experiment(searcher.client).trials
    assert trials[index].status.name == "ABANDONED"
    later = [gate.suggest(f"b{i}") for i in range(2, MAX_BATCH + 2)]
    assert dear not in later and first not in later
    assert all(isinstance(p, dict) for p in later)


def test_a_resumed_search_regenerates_its_queue_and_runs_nothing_twice(tmp_path):
    """Queued proposals are not persisted: the snapshot holds them as open Ax trials, which a resume
    abandons since no trial ran them; the resumed search makes a new batch."""
    history = []
    searcher = _searcher()
    _initialise(searcher, history)
    handed = searcher.ask()
    queued = [p for _, p in searcher._queue]
    assert queued
    searcher.save_state(tmp_path / "searcher.json")
    history.append((handed, Outcome("stopped")))  # the driver died while it ran

    resumed = _searcher()
    resumed.resume(history, tmp_path / "searcher.json")
    assert not resumed._queue and "RUNNING" not in _statuses(resumed)
    assert _statuses(resumed)["COMPLETED"] == 5
    nxt = [resumed.ask() for _ in range(MAX_BATCH)]
    assert resumed.policy.steps == {"lean": 1}  # one batch, in the resumed searcher's own step
    assert len({tuple(sorted(p.items())) for p in nxt}) == MAX_BATCH


def test_the_energy_models_optimisation_is_spaced_in_proportion_to_a_trial():
    from tuner.search.step_policy import upkeep_every

    optimise = 0.6 * KWH_PER_CPU_S  # a kernel optimisation on 100 trials
    assert upkeep_every(optimise, 0.05, 100, 3) == 3  # GPU trials: every third trial, as before
    assert upkeep_every(optimise, 200 * KWH_PER_CPU_S, 100, 3) == 3  # 0.3 % of a trial: kept
    assert upkeep_every(optimise, 10 * KWH_PER_CPU_S, 100, 3) == 12  # 6 %: every 12th brings it to 0.5 %
    cheap = 0.5 * KWH_PER_CPU_S  # trials of half a CPU-second
    assert upkeep_every(optimise, cheap, 1000, 3) == math.ceil(0.6 / (UPKEEP_SHARE * 0.5))  # UPKEEP_SHARE of each
    assert upkeep_every(optimise, cheap, 100, 3) == 50  # but again once the data has grown by half
    assert upkeep_every(optimise, cheap, 30, 3) == 15
    assert upkeep_every(None, cheap, 30, 3) == 3


def test_a_lean_step_counts_the_tuners_own_spend_in_each_candidates_cost():
    """The cost-aware acquisition's kWh gains the tuner's spend per trial on a lean step, none on the full one."""
    import torch
    from botorch.acquisition.multi_objective.objective import WeightedMCMultiOutputObjective
    from botorch.models import ModelListGP, SingleTaskGP

    from tuner.search.cost_aware import CostAwareLogNEHVI

    torch.manual_seed(0)
    X = torch.rand(8, 2, dtype=torch.float64)
    model = ModelListGP(SingleTaskGP(X, X.sum(-1, keepdim=True)), SingleTaskGP(X, X[:, :1]))
    kwargs = dict(model=model, ref_point=[-3.0, -3.0], X_baseline=X, cost_weight=1.0, energy_mean=-6.0,
                  energy_std=0.3, objective=WeightedMCMultiOutputObjective(torch.tensor([1.0, -1.0], dtype=torch.float64)))
    plain, with_overhead = CostAwareLogNEHVI(**kwargs), CostAwareLogNEHVI(**kwargs, overhead_kwh=2e-6)
    candidates = torch.rand(5, 1, 2, dtype=torch.float64)
    with torch.no_grad():
        kwh = plain.log_kwh(candidates).exp()
        assert torch.allclose(with_overhead.log_kwh(candidates).exp(), kwh + 2e-6)

    searcher = _searcher()
    searcher.cpu_seconds, searcher.told_trials = 36.0, 72  # half a CPU-second per trial
    assert searcher.overhead_per_trial_kwh() == pytest.approx(0.5 * KWH_PER_CPU_S)
