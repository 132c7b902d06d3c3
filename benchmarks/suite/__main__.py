"""The search benchmark suite (issue 18): does greentune's search generalise beyond three traces?

    python -m benchmarks.suite --problems zeus:squad/rtx6000,ridge --strategies bo,random,tpe --seeds 2 --trials 40
    python -m benchmarks.suite --problems zeus,constructed --seeds 3 --trials 100 --out suite.jsonl
    python -m benchmarks.suite --concurrency 1,4,8 --strategies bo,random --problems noisy --seeds 2
    python -m benchmarks.suite --summarise suite.jsonl [more.jsonl]

Problems: ``zeus`` (the 24 workload x GPU pairs; each skipped with its reason when its data
is absent), ``constructed`` (the five of :mod:`benchmarks.suite.constructed`), or names.
Every strategy is driven through its ask/tell interface in this process (no Ray) by
:mod:`benchmarks.suite.runner`, with the same kWh budget (``--max-fraction`` of the grid's
kWh), trial cap and failure handling. One JSON line per run goes to ``--out`` as it
finishes, so a long sweep can be summarised while it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.suite import peers, problems, runner, summary


def curves(problem: problems.Problem, run: runner.Run) -> dict[str, Any]:
    """The run's curves after each finished trial: hv share, spent share of the grid's kWh, seconds."""
    points: list[tuple[float, float]] = []
    hv, spent, seconds, keys, failed = [], [], [], set(), 0
    for record in run.records:
        point = problem.point(record.ran)
        if point is not None:
            points.append(point)
        failed += record.failed
        keys.add(problem.key(record.ran))
        hv.append(problems.hypervolume(points) / problem.true_hv if points else 0.0)
        spent.append(record.spent_kwh / problem.grid_kwh)
        seconds.append(record.finished_s)
    return {"hv": hv, "spent": spent, "seconds": seconds, "failed": failed, "distinct": len(keys),
            "trials": len(run.records)}


def seeds_of(text: str) -> list[int]:
    """``3`` is seeds 0, 1, 2; ``4,7`` is seeds 4 and 7."""
    return [int(s) for s in text.split(",")] if "," in text else list(range(int(text)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite", description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="zeus,constructed",
                        help="comma list: zeus, constructed, zeus:<workload>/<gpu>, or a constructed name")
    parser.add_argument("--strategies", default=",".join(peers.STRATEGIES), help="comma list of "
                        + ", ".join(peers.STRATEGIES))
    parser.add_argument("--seeds", default="3", help="a count (0..n-1) or a comma list")
    parser.add_argument("--trials", type=int, default=100, help="trial cap, the same for every strategy")
    parser.add_argument("--max-fraction", type=float, default=0.1,
                        help="kWh budget of every run, as a share of the problem's grid kWh")
    parser.add_argument("--concurrency", default="1", help="comma list of trials run at once, e.g. 1,4,8")
    parser.add_argument("--data", type=Path, help="folder holding zeus/ (default $GREENTUNE_DATA or ../shared/data)")
    parser.add_argument("--out", type=Path, help="append one JSON line per run here")
    parser.add_argument("--summarise", nargs="+", type=Path, help="only print the tables of these JSON-lines files")
    args = parser.parse_args(argv)
    if args.summarise:
        print_summary(summary.read(args.summarise))
        return 0
    from tuner.config import EnergySettings
    from tuner.energy import driver_watts_per_core

    watts = driver_watts_per_core(EnergySettings())
    loaded = problems.load(args.problems.split(","), args.data)
    for name, reason in loaded.skipped.items():
        print(f"skipped {name}: {reason}", flush=True)
    lines: list[dict[str, Any]] = []
    for problem in loaded.problems:
        print(problem.describe(), flush=True)
        budget = args.max_fraction * problem.grid_kwh
        for concurrency in [int(k) for k in args.concurrency.split(",")]:
            for name in args.strategies.split(","):
                for seed in seeds_of(args.seeds):
                    line = one(problem, name, seed, budget, args.trials, concurrency, watts)
                    line |= {"max_fraction": args.max_fraction, "max_trials": args.trials}
                    lines.append(line)
                    if args.out:
                        with args.out.open("a") as handle:
                            handle.write(json.dumps(line) + "\n")
                    status = line["error"] or (f"{line['trials']} trials, final hv {line['hv'][-1]:.3f}"
                                               if line["hv"] else "no trials")
                    print(f"  {line['strategy']} k={concurrency} seed {seed}: {status}, "
                          f"{line['driver_s']:.0f} s", flush=True)
    print()
    print(f"seeds {args.seeds}, trial cap {args.trials}, budget {args.max_fraction:.0%} of the grid's kWh")
    print_summary(lines)
    return 0


def one(problem: problems.Problem, name: str, seed: int, budget: float, max_trials: int, concurrency: int,
        watts: float) -> dict[str, Any]:
    """One run as a JSON-able line; a peer that cannot be built or crashes is recorded with its error."""
    base = {"problem": problem.name, "strategy": name, "seed": seed, "concurrency": concurrency,
            "grid_kwh": problem.grid_kwh, "true_hv": problem.true_hv}
    start = time.perf_counter()
    try:
        strategy = peers.make(name, problem, seed, budget, max_trials)
        run = runner.run(problem, strategy, seed, budget, max_trials, concurrency, watts)
    except Exception as error:  # noqa: BLE001 - a peer that crashes is a result, not the end of the sweep
        return base | {"error": f"{type(error).__name__}: {error}"[:300], "limits": "", "hv": [], "spent": [],
                       "seconds": [], "failed": 0, "distinct": 0, "trials": 0,
                       "driver_s": time.perf_counter() - start, "overhead_kwh": 0.0}
    return base | {"strategy": strategy.name, "error": None, "limits": strategy.limits,
                   "driver_s": run.driver_s, "overhead_kwh": run.overhead_kwh} | curves(problem, run)


def print_summary(lines: list[dict[str, Any]]) -> None:
    print(summary.problem_table(lines))
    print()
    print(summary.compact_table(lines))
    print()
    print(summary.versus_best_peer(lines))
    table = summary.concurrency_table(lines)
    if table:
        print()
        print(table)
    print()
    print(summary.limits_table(lines))


if __name__ == "__main__":
    sys.exit(main())
