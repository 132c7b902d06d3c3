"""Drive one strategy on one problem: trials one at a time, or several at once on simulated time.

Each trial's duration is the problem's (the traces' seconds per epoch for Zeus); with
``concurrency`` k, k trials are asked before any is told, and the next is asked when the
earliest running one finishes, as ``tune()`` does with ``max_concurrent_trials``: pending
trials stay pending in the strategy (Ax sees them as running trials and conditions on
them; Optuna and Syne Tune on their own terms). A run stops asking once the kWh of its
finished and running trials reach the budget, or at the trial cap; it ends when its last
trial finishes.

Energy counted at any moment: finished trials in full, running ones pro rata, and the
driver's own CPU (every ask and tell) at the ledger's watts per core, as ``tune()``
charges it. Trial ``n`` of every strategy draws its noise from ``(seed, n)``.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.suite.peers import WAIT, Strategy
from benchmarks.suite.problems import Evaluation, Problem


@dataclass
class Record:
    """One finished trial: the configuration that ran, and the run's totals at its end."""

    ran: dict[str, Any]
    failed: bool
    kwh: float
    finished_s: float  # simulated wall clock
    spent_kwh: float  # everything spent by then, running trials pro rata and the driver included


@dataclass
class Run:
    problem: str
    strategy: str
    seed: int
    concurrency: int
    records: list[Record] = field(default_factory=list)
    overhead_kwh: float = 0.0
    driver_s: float = 0.0
    error: str | None = None


def run(problem: Problem, strategy: Strategy, seed: int, budget_kwh: float, max_trials: int,
        concurrency: int = 1, watts_per_core: float = 0.0) -> Run:
    """One run of ``strategy`` on ``problem``; see the module docstring for what counts."""
    out = Run(problem.name, strategy.name, seed, concurrency)
    running: list[tuple[float, int, float, dict, dict, Evaluation]] = []  # (end, n, start, asked, ran, evaluation)
    cpu = 0.0
    now, committed, finished_kwh, asked, exhausted = 0.0, 0.0, 0.0, 0, False

    def timed(call: Any, *args: Any) -> Any:
        nonlocal cpu
        start = time.process_time()
        try:
            return call(*args)
        finally:
            cpu += time.process_time() - start

    wall = time.perf_counter()
    while True:
        while not exhausted and len(running) < concurrency and asked < max_trials and committed < budget_kwh:
            params = timed(strategy.ask)
            if params is None or (params == WAIT and not running):
                exhausted = True  # finished, or waiting with nothing running to wait for
                break
            if params == WAIT:
                break
            ran, evaluation = _evaluate(problem, strategy, params, np.random.default_rng([seed, asked]), timed)
            heapq.heappush(running, (now + max(evaluation.seconds, 1e-9), asked, now, params, ran, evaluation))
            committed += evaluation.kwh
            asked += 1
        if not running:
            break
        end, _, _, params, ran, evaluation = heapq.heappop(running)
        now = end
        timed(strategy.tell, params, evaluation)
        finished_kwh += evaluation.kwh
        partial = sum(e.kwh * (now - s) / max(e.seconds, 1e-9) for _, _, s, _, _, e in running)
        out.overhead_kwh = cpu * watts_per_core / 3.6e6
        out.records.append(Record(ran, evaluation.accuracy is None, evaluation.kwh, now,
                                  finished_kwh + partial + out.overhead_kwh))
    out.driver_s = time.perf_counter() - wall
    return out


def _evaluate(problem: Problem, strategy: Strategy, params: dict[str, Any], rng_seed: np.random.Generator,
              timed: Any) -> tuple[dict[str, Any], Evaluation]:
    """The trial's outcome; a strategy that stops trials early sees each epoch and may stop it.

    Every epoch's report is drawn from the same generator state, so it follows one
    sampled run (one trace run for Zeus), as a real trial's reports do.
    """
    state = rng_seed.bit_generator.state
    if not strategy.stops_early or problem.fidelity is None:
        return params, problem.evaluate(params, rng_seed)
    fid = problem.fidelity
    evaluation = None
    for epoch in range(1, int(params[fid]) + 1):
        rng_seed.bit_generator.state = state
        ran = {**params, fid: epoch}
        evaluation = problem.evaluate(ran, rng_seed)
        if evaluation.accuracy is None or epoch == params[fid] or not timed(strategy.keep_going, params, epoch,
                                                                             evaluation):
            return ran, evaluation
    raise AssertionError("unreachable")
