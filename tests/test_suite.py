"""The benchmark suite (benchmarks/suite) measures what it says it measures."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.suite import constructed, peers, problems, runner
from benchmarks.suite.problems import Evaluation

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GREENTUNE_DATA") or ROOT.parent / "shared" / "data")
needs_zeus = pytest.mark.skipif(not (DATA / "zeus" / "summary_train.csv").is_file(),
                                reason=f"Zeus traces not found under {DATA / 'zeus'} (set GREENTUNE_DATA)")


def test_binary_problem_fails_on_a_fifth_of_the_space_mostly_where_energy_is_low():
    problem = constructed.make("binary-infeasible")
    space = constructed._product({n: p.values for n, p in problem.space.items()})  # noqa: SLF001
    _, kwh, failed = problem.model(space)
    assert len(kwh) == 2**10 * 27
    assert failed.mean() == pytest.approx(0.20, abs=0.01)
    cheap = kwh <= np.quantile(kwh, 0.25)
    dear = kwh >= np.quantile(kwh, 0.75)
    assert failed[cheap].mean() > 2 * failed[dear].mean()
    # a failed trial is told as failed and still costs energy
    params = {n: v[int(np.argmax(failed))] for n, v in space.items()}
    evaluation = problem.evaluate(params, np.random.default_rng(0))
    assert evaluation.accuracy is None and evaluation.kwh > 0 and problem.point(params) is None


@pytest.mark.parametrize("name", ["fixed-cost", "ridge", "noisy"])
def test_constructed_front_is_not_beaten_by_random_configurations_and_the_grid_is_greentunes(name: str):
    from tuner.search import GridSearcher

    problem = constructed.make(name)
    assert problem.front_gap() == 0.0
    assert 0 < problem.true_hv < 1
    grid = GridSearcher(problem.grid_space, seed=0, resolution=problem.grid_resolution)
    points = [grid.ask() for _ in range(grid.size)]
    kwh = sum(problem.evaluate(p, np.random.default_rng(0)).kwh for p in points)
    assert kwh == pytest.approx(problem.grid_kwh)
    assert problem.hv_fraction(points) <= 1.0 + 1e-9


def test_constructed_generator_is_seeded():
    a, b, c = constructed.make("ridge", 0), constructed.make("ridge", 0), constructed.make("ridge", 1)
    assert a.true_hv == b.true_hv and a.grid_kwh == b.grid_kwh
    assert a.grid_kwh != c.grid_kwh or a.true_hv != c.true_hv


def test_trials_at_once_share_the_wall_clock_and_every_trial_is_told():
    problem = constructed.make("fixed-cost")
    budget = 0.2 * problem.grid_kwh
    one = runner.run(problem, peers.make("random", problem, 0, budget, 24), 0, budget, 24, concurrency=1)
    four = runner.run(problem, peers.make("random", problem, 0, budget, 24), 0, budget, 24, concurrency=4)
    assert len(one.records) == len(four.records) == 24
    # the same proposals (random does not learn), the same energy, a quarter of the time or so
    assert sorted(map(str, (r.ran for r in one.records))) == sorted(map(str, (r.ran for r in four.records)))
    assert one.records[-1].spent_kwh == pytest.approx(four.records[-1].spent_kwh)
    assert four.records[-1].finished_s < 0.5 * one.records[-1].finished_s
    spent = [r.spent_kwh for r in four.records]
    assert spent == sorted(spent)


def test_a_run_stops_asking_once_its_budget_is_committed():
    problem = constructed.make("fixed-cost")
    budget = 0.02 * problem.grid_kwh
    run = runner.run(problem, peers.make("random", problem, 0, budget, 1000), 0, budget, 1000)
    before_last = sum(r.kwh for r in run.records[:-1])
    assert before_last < budget <= sum(r.kwh for r in run.records)


class _Expected(problems.ZeusProblem):
    """A Zeus problem whose trials report the expected accuracy, as tests/suite_objectives.py does."""

    def evaluate(self, params: dict[str, Any], rng: np.random.Generator) -> Evaluation:
        batch, power, epochs = self._config(params)
        seconds = epochs * self.trace.extra["epoch_s"][(batch, power)]
        return Evaluation(self.trace.expected_accuracy(batch, epochs), self.trace.energy_kwh(batch, power, epochs),
                          seconds)


@needs_zeus
@pytest.mark.ray
@pytest.mark.parametrize("strategy", ["random", "bo"])
def test_tune_tries_what_the_ask_tell_driver_tries(ray_session, tmp_path: Path, strategy: str):
    """The suite drives the searchers as ``tune()`` does: the same trials, hence the same figures.

    Where they must differ: ``tune()`` charges its whole driver (Ray, the ledger) and the
    suite only the searcher's ask and tell, so kWh spent differs by the driver's overhead;
    and a budget that binds makes ``tune()`` swap unaffordable proposals (``ask_within``),
    which the suite does not, so the budget here is large and the trial cap ends both.
    """
    import tuner
    from benchmarks import zeus_traces as zt

    trials = 6
    problem = _Expected(zt.load_problem(DATA, "squad/rtx6000"))
    budget = 10 * problem.grid_kwh
    ours = runner.run(problem, peers.make(strategy, problem, 0, budget, trials), 0, budget, trials)
    space = {n: p.model_dump(exclude_defaults=False) for n, p in problem.space.items()}
    result = tuner.tune({"objective": "tests.suite_objectives:zeus_squad", "search_space": space, "seed": 0,
                         "strategy": strategy, "max_concurrent_trials": 1, "output_dir": tmp_path / strategy},
                        budget_kwh=budget, max_trials=trials, progress=False)
    theirs = result.trials
    assert list(theirs["status"]) == ["completed"] * trials
    tried = [(int(r.batch_size), int(r.power_limit), int(r.epochs)) for r in theirs.itertuples()]
    assert tried == [(r.ran["batch_size"], r.ran["power_limit"], r.ran["epochs"]) for r in ours.records]
    assert list(theirs["energy_kwh"]) == pytest.approx([r.kwh for r in ours.records])
    hv_tune = problem.hv_fraction([dict(zip(("batch_size", "power_limit", "epochs"), t, strict=True)) for t in tried])
    assert math.isclose(hv_tune, problem.hv_fraction([r.ran for r in ours.records]))


def test_measures_read_the_curves_at_each_budget_and_the_first_time_past_95_percent():
    from benchmarks.suite import summary

    line = {"hv": [0.5, 0.8, 0.96, 0.97], "spent": [0.004, 0.015, 0.03, 0.07], "seconds": [1, 2, 3, 4],
            "failed": 1, "distinct": 3, "trials": 4}
    m = summary.measures(line)
    assert (m["hv@1%"], m["hv@2%"], m["hv@5%"]) == (0.5, 0.8, 0.96)
    assert m["kwh95"] == pytest.approx(3.0) and m["wall95"] == 3
    assert m["failed"] == 25 and m["distinct"] == 75
    assert summary.measures({**line, "hv": [0.5, 0.6, 0.7, 0.8]})["kwh95"] is None


def test_bo_is_held_to_the_best_other_strategy_on_each_problem():
    from benchmarks.suite import summary

    def line(problem: str, strategy: str, hv: float) -> dict[str, Any]:
        return {"problem": problem, "strategy": strategy, "seed": 0, "concurrency": 1, "hv": [hv],
                "spent": [0.005], "seconds": [1.0], "failed": 0, "distinct": 1, "trials": 1}

    lines = [line("a", "bo", 0.9), line("a", "random", 0.5), line("a", "tpe", 0.95),
             line("b", "bo", 0.9), line("b", "random", 0.895), line("c", "bo", 0.9), line("c", "tpe", 0.7)]
    row = next(r for r in summary.versus_best_peer(lines).splitlines() if r.startswith("| hv@1%"))
    assert "| 1 / 1 / 1 |" in row  # c won, b tied (within 0.01), a lost to tpe
