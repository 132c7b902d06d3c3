"""Does the energy budget hold? Budget-bound studies replayed on the Zeus GPU traces.

    python benchmarks/budget_hold.py                                  # 24 problems x 5 seeds, random/grid/sobol
    python benchmarks/budget_hold.py --strategies bo --seeds 2 --budgets 0.03
    PYTHONPATH=/path/to/old/checkout python benchmarks/budget_hold.py # the same studies on older code
    python benchmarks/budget_hold.py --calibration --seeds 2          # the energy model's upper band alone
    python benchmarks/budget_hold.py --grid-estimate --seeds 2        # the price tag's full-grid estimate

Each study is one workload on one GPU from ``benchmarks/zeus_traces.py`` (batch size x power
limit x epochs), its objective *reporting* its energy as a replayed trace does: heartbeats
carry nothing the budget can act on, the trial's kWh arrives with its final report. That is
the case where only admission can hold the budget: once a trial starts, its energy is spent.

The studies run through greentune's real budget parts, in this one process, without Ray:
the ``EnergyLedger`` books every result, the ``StudyStopper`` sees it first (as Ray calls it),
and the ``BudgetGate`` around the study's searcher (``GridSearcher``, ``RandomSearcher``,
``AxSearcher`` for ``sobol`` and ``bo``) decides each launch. ``--concurrency`` trials run at
once on a virtual clock: a trial lasts epochs x the trace's time per epoch. The budget is a
fraction of the full grid's kWh (``--budgets``); ``max_trials`` is high enough never to bind.
Because only public constructors and calls are used, the script runs unchanged against an
older greentune (``PYTHONPATH``), which is how the before/after figures in docs/search.md
were measured.

Reported per strategy and budget: how many studies ended over their budget, by how much
(worst and median overshoot, % of the budget), how much of the budget the others used
(median), trials per study, and the finish reasons.
"""

from __future__ import annotations

import argparse
import collections
import heapq
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.objectives_for_tests names the objective the configs check

import zeus_traces as z  # noqa: E402

STRATEGIES = ("random", "grid", "sobol")
BUDGETS = (0.01, 0.03, 0.1)
MAX_TRIALS = 1000
BLIND_TRIALS = 3  # trials started before this many completed are priced by no model (MIN_TRIALS)


@dataclass
class StudyOutcome:
    problem: str
    strategy: str
    budget_fraction: float
    seed: int
    budget_kwh: float
    total_kwh: float
    trials: int
    finish_reason: str | None
    wall_s: float
    admitted_with_prediction: int = 0
    under_upper: int = 0
    blind_kwh: float = 0.0  # energy of the trials started before 3 had completed: nothing could price them

    @property
    def used(self) -> float:
        return self.total_kwh / self.budget_kwh


def make_searcher(name: str, problem: z.TraceProblem, seed: int, budget_kwh: float) -> Any:
    from tuner.search import GridSearcher, RandomSearcher

    space = z.greentune_space(problem, log_epochs=True)
    if name == "grid":
        return GridSearcher(z.greentune_space(problem, False), metric="accuracy", seed=seed,
                            resolution=z.GRID_EPOCH_LEVELS)
    if name == "random":
        return RandomSearcher(space, metric="accuracy", seed=seed)
    import logging

    from ax.utils.common.logger import set_stderr_log_level

    from tuner.search.ax_searcher import AxSearcher

    searcher = AxSearcher(space, metric="accuracy", mode="max", seed=seed, method=name,
                          budget_kwh=budget_kwh, max_trials=MAX_TRIALS)
    set_stderr_log_level(logging.ERROR)
    return searcher


def run_study(problem: z.TraceProblem, strategy: str, fraction: float, seed: int, concurrency: int,
              watts_per_core: float) -> StudyOutcome:
    """One budget-bound study, trial by trial, through the ledger, stopper and gate."""
    import numpy as np
    from ray.tune.search import Searcher

    from tuner.study.budget import BudgetGate, StudyStopper
    from tuner.study.ledger import EnergyLedger

    start = time.perf_counter()
    budget = fraction * problem.grid_kwh
    searcher = make_searcher(strategy, problem, seed, budget)
    ledger = EnergyLedger(budget, watts_per_core, "accuracy", lambda: searcher.cpu_seconds, 2.0,
                          searcher.expected_step_cpu_seconds)
    gate = BudgetGate(searcher, ledger, MAX_TRIALS)
    stopper = StudyStopper(ledger)
    rng = np.random.default_rng(seed + 1000)
    clock, running, counter, finished = 0.0, [], 0, False
    predicted: dict[str, float] = {}
    admitted_with_prediction = under_upper = 0
    blind_kwh, completed, blind = 0.0, 0, set()
    while True:
        while not finished and len(running) < concurrency and not stopper.stop_all():
            counter += 1
            trial_id = f"t{counter:04d}"
            params = gate.suggest(trial_id)
            if params == Searcher.FINISHED:
                finished = True
                break
            if params is None:
                break
            batch, power, epochs = int(params["batch_size"]), int(params["power_limit"]), int(params["epochs"])
            curve = problem.curves[batch][rng.integers(len(problem.curves[batch]))]
            kwh = problem.energy_kwh(batch, power, epochs)
            seconds = epochs * problem.extra["epoch_s"][(batch, power)]
            # the objective's process: a heartbeat with what a meter saw of a replay (nothing)
            first = {"energy_kwh": 0.0, "greentune_status": "running", "training_iteration": 1}
            stopper(trial_id, first)
            record = ledger.get(trial_id)
            upper = (record.info.get("energy_predicted_upper_kwh") if record is not None else None)
            if upper is not None:
                predicted[trial_id] = float(upper)
            final = {"energy_kwh": kwh, "accuracy": float(curve[epochs]), "greentune_status": "completed",
                     "energy_source": "reported", "training_iteration": 2}
            heapq.heappush(running, (clock + seconds, trial_id, final, clock))
            if completed < BLIND_TRIALS:
                blind.add(trial_id)
        if not running:
            if finished or stopper.stop_all():
                break
            # the gate waits with nothing running: it would wait forever
            raise RuntimeError(f"{problem.name} {strategy}: the gate waits with no trial running")
        clock, trial_id, final, _ = heapq.heappop(running)
        if stopper(trial_id, final):
            # Ray stops every running trial. A replay's heartbeats carry nothing, but a real
            # trial would have spent its share of the energy by now: book that, pro rata.
            for end, other, result, began in running:
                spent = result["energy_kwh"] * (clock - began) / max(end - began, 1e-9)
                ledger.observe(other, {"energy_kwh": spent, "greentune_status": "running", "training_iteration": 3})
                ledger.stop(other)
            running = []
        gate.on_trial_complete(trial_id, final)
        completed += 1
        if trial_id in predicted:
            admitted_with_prediction += 1
            under_upper += final["energy_kwh"] <= predicted[trial_id]
        if trial_id in blind:
            blind_kwh += final["energy_kwh"]
    reason = gate.finish_reason
    if reason is None and ledger.stopped_at is not None:
        reason = "energy budget spent"
    return StudyOutcome(problem.name, strategy, fraction, seed, budget, ledger.total_kwh, ledger.n_trials,
                        reason, time.perf_counter() - start, admitted_with_prediction, under_upper, blind_kwh)


def summarise(outcomes: list[StudyOutcome]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, float], list[StudyOutcome]] = collections.defaultdict(list)
    for o in outcomes:
        groups[(o.strategy, o.budget_fraction)].append(o)
    rows = []
    for (strategy, fraction), studies in sorted(groups.items()):
        over = [o for o in studies if o.total_kwh > o.budget_kwh * (1 + 1e-9)]
        under = [o for o in studies if o not in over]
        reasons = collections.Counter(_reason_kind(o.finish_reason) for o in studies)
        predicted = sum(o.admitted_with_prediction for o in studies)
        rows.append({
            "strategy": strategy, "budget": fraction, "studies": len(studies), "over": len(over),
            # over budget already with the trials no prediction priced (before any completed)
            "over_blind": sum(o.blind_kwh > o.budget_kwh for o in over),
            "worst_over_pct": max((100 * (o.used - 1) for o in over), default=0.0),
            "median_over_pct": statistics.median([100 * (o.used - 1) for o in over]) if over else 0.0,
            "median_used_pct_if_under": statistics.median([100 * o.used for o in under]) if under else float("nan"),
            "median_used_pct_all": statistics.median([100 * o.used for o in studies]),
            "median_trials": statistics.median([o.trials for o in studies]),
            "upper_band_held": (sum(o.under_upper for o in studies) / predicted) if predicted else float("nan"),
            "reasons": dict(reasons),
        })
    return rows


def _reason_kind(reason: str | None) -> str:
    if reason is None:
        return "none"
    return reason.split(" (")[0]


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'strategy':<9}{'budget':>7}{'studies':>8}{'over':>6}{'blind':>7}{'worst over':>12}{'median over':>13}"
          f"{'used (under)':>14}{'used (all)':>12}{'trials':>8}{'upper held':>12}  finish reasons")
    for r in rows:
        print(f"{r['strategy']:<9}{r['budget']:>7.0%}{r['studies']:>8}{r['over']:>6}{r['over_blind']:>7}"
              f"{r['worst_over_pct']:>11.1f}%{r['median_over_pct']:>12.1f}%"
              f"{r['median_used_pct_if_under']:>13.1f}%{r['median_used_pct_all']:>11.1f}%"
              f"{r['median_trials']:>8.0f}{r['upper_band_held']:>12.2f}  {r['reasons']}")
    print("(over: studies whose total kWh, tuner overhead included, passed the budget; blind: of those, studies "
          "whose trials started before 3 had completed (nothing to price them on) alone passed it; "
          "worst/median over: "
          "by how much, % of the budget; used: median share of the budget spent; upper held: share of trials "
          "admitted on a prediction that cost at most its upper band)")


# ----------------------------------------------------------------------------- the energy model alone


def sequence(problem: z.TraceProblem, seed: int, n: int, cheap_corner: bool) -> list[dict[str, Any]]:
    """``n`` configurations of a random search with log-scaled epochs, in order; with
    ``cheap_corner``, the cheapest third of 3n draws first, then fresh draws: a search that
    began in the cheap corner of the space and then left it."""
    from tuner.search import RandomSearcher

    searcher = RandomSearcher(z.greentune_space(problem, log_epochs=True), metric="accuracy", seed=seed)
    draws = [searcher.ask() for _ in range(4 * n)]
    if not cheap_corner:
        return draws[:n]
    cheap = sorted(draws[: 3 * n], key=lambda c: problem.energy_kwh(c["batch_size"], c["power_limit"], c["epochs"]))
    return cheap[: n // 2] + draws[3 * n: 3 * n + n - n // 2]


def calibration(problem: z.TraceProblem, seeds: int, cheap_corner: bool, last: int = 20) -> list[dict[str, Any]]:
    """Fit the energy model on trials 1..k (k = 3..last) and price trial k + 1: does its
    upper band hold, and how far above the truth is it?"""
    from tuner.search.energy_model import EnergyModel

    rows = []
    for seed in range(seeds):
        configs = sequence(problem, seed, last + 1, cheap_corner)
        kwh = [problem.energy_kwh(c["batch_size"], c["power_limit"], c["epochs"]) for c in configs]
        model = EnergyModel(z.greentune_space(problem, log_epochs=True))
        for k in range(3, last + 1):
            cpu = time.process_time()
            model.fit(configs[:k], kwh[:k])
            prediction = model.predict(configs[k])
            rows.append({"problem": problem.name, "seed": seed, "trials": k, "held": kwh[k] <= prediction.upper_kwh,
                         "upper_over_true": prediction.upper_kwh / kwh[k], "median_over_true": prediction.kwh / kwh[k],
                         "cpu_s": time.process_time() - cpu})
    return rows


def grid_estimates(problem: z.TraceProblem, seeds: int, trials: int, cheap_corner: bool) -> list[dict[str, Any]]:
    """The price tag's full-grid estimate from ``trials`` completed trials, against the true grid."""
    import pandas as pd

    from tuner.config import load_config
    from tuner.reporting.price import grid_estimate
    from tuner.result import TuneResult

    space = {"batch_size": {"type": "choice", "values": problem.batch_sizes, "ordered": True},
             "power_limit": {"type": "choice", "values": problem.power_limits, "ordered": True},
             "epochs": {"type": "int", "low": 1, "high": problem.max_epochs}}  # linear: the benchmark's grid
    config = load_config({"objective": "tests.objectives_for_tests:quadratic", "search_space": space,
                          "grid_resolution": z.GRID_EPOCH_LEVELS, "budget_kwh": 1.0, "output_dir": "unused"})
    rows = []
    for seed in range(seeds):
        configs = sequence(problem, seed, trials, cheap_corner)
        table = pd.DataFrame([{"trial_id": f"t{i}", "status": "completed", **c, "accuracy": 0.5,
                               "energy_kwh": problem.energy_kwh(c["batch_size"], c["power_limit"], c["epochs"])}
                              for i, c in enumerate(configs)])
        result = TuneResult.from_state(table, config, {"total_energy_kwh": float(table["energy_kwh"].sum())})
        row = {"problem": problem.name, "seed": seed, "trials": trials, "estimated": False}
        try:
            grid = grid_estimate(result)
        except ValueError as exc:
            rows.append({**row, "note": str(exc)})
            continue
        truth = problem.grid_kwh
        rows.append({**row, "estimated": True, "ratio": grid.kwh / truth,
                     "inside": grid.kwh_low <= truth <= grid.kwh_high, "width": grid.kwh_high / grid.kwh_low})
    return rows


def print_model_table(kind: str, rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows)
    if kind == "calibration":
        early = frame[frame["trials"] < 6]
        print(f"upper band held for {frame['held'].mean():.1%} of next trials ({len(frame)}; {early['held'].mean():.1%}"
              f" when fitted on 3-5 trials); upper / true: median {frame['upper_over_true'].median():.2f}, "
              f"median / true: median {frame['median_over_true'].median():.2f}; fit and predict "
              f"{1000 * frame['cpu_s'].median():.0f} ms CPU (median)")
        return
    done = frame[frame["estimated"]]
    print(f"estimated {len(done)} of {len(frame)} studies (the others: 'cannot estimate'); true grid inside the "
          f"90 % interval in {int(done['inside'].sum())} of {len(done)}; estimate / true: median "
          f"{done['ratio'].median():.3f} [{done['ratio'].min():.3f}-{done['ratio'].max():.3f}], low in "
          f"{int((done['ratio'] < 1).sum())}; interval high / low: median {done['width'].median():.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder holding zeus/ (default: $GREENTUNE_DATA or ../shared/data)")
    parser.add_argument("--problems", default=",".join(z.ALL_PROBLEMS))
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budgets", default=",".join(str(b) for b in BUDGETS),
                        help="budgets as fractions of the full grid's kWh")
    parser.add_argument("--concurrency", type=int, default=1, help="trials running at once")
    parser.add_argument("--json", help="write every study's outcome to this JSON file")
    parser.add_argument("--calibration", action="store_true",
                        help="instead: how often the energy model's upper band holds for the next trial")
    parser.add_argument("--grid-estimate", action="store_true",
                        help="instead: the price tag's full-grid estimate against the true grid")
    parser.add_argument("--trials", type=int, default=20, help="completed trials per --grid-estimate study")
    args = parser.parse_args()
    import logging

    from tuner.config import EnergySettings
    from tuner.energy import driver_watts_per_core

    logging.getLogger("tuner").setLevel(logging.ERROR)  # the gate's lines, once per proposal that does not fit
    data = z.data_dir(args.data)
    watts = driver_watts_per_core(EnergySettings())
    if args.calibration or args.grid_estimate:
        for cheap_corner in (False, True):
            rows = []
            for name in args.problems.split(","):
                problem = z.load_problem(data, name)
                rows += (calibration(problem, args.seeds, cheap_corner) if args.calibration
                         else grid_estimates(problem, args.seeds, args.trials, cheap_corner))
            print("trials of a random search" + (", the first half from its cheap corner:" if cheap_corner else ":"))
            print_model_table("calibration" if args.calibration else "grid", rows)
        return
    outcomes = []
    for name in args.problems.split(","):
        problem = z.load_problem(data, name)
        for strategy in args.strategies.split(","):
            for fraction in (float(b) for b in args.budgets.split(",")):
                for seed in range(args.seeds):
                    outcome = run_study(problem, strategy, fraction, seed, args.concurrency, watts)
                    outcomes.append(outcome)
                    print(f"{name:<22}{strategy:<7}{fraction:>5.0%} seed {seed}: {outcome.trials:>3} trials, "
                          f"{100 * outcome.used:6.1f}% of the budget, {outcome.finish_reason} "
                          f"({outcome.wall_s:.1f} s)", flush=True)
    print()
    print_table(summarise(outcomes))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(o) for o in outcomes], indent=1))


if __name__ == "__main__":
    sys.exit(main())
