"""``bo`` on the Zeus traces, before and after a change to the searcher, in one command.

    python benchmarks/zeus_before_after.py --before /path/to/old/checkout
    python benchmarks/zeus_before_after.py --before ../old --problems cifar100/v100,squad/a40 --seeds 3

Runs ``benchmarks/zeus_traces.py``'s ``bo`` (same problems, seeds, budgets and caps as
that script: 100 trials, 10 % of the grid's kWh) with ``tuner`` imported from the
``--before`` checkout and from this one, in two child processes side by side (so both
see the same load), one (problem, seed) pair at a time (every problem on seed 0 first), and prints per problem and
overall: the kWh to reach 95 % of the true hypervolume (as % of the full grid's kWh,
driver CPU included), hypervolume at 1 / 2 / 5 % of it, and the driver CPU seconds per
step; median and worst over the pairs, and the after/before ratio of the median.
A default of the searcher changes only if the "after" column holds on every problem.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# a leave-one-out style sample of the 24 pairs: every workload once, every GPU at least once
SAMPLE = ("cifar100/v100", "imagenet/a40", "squad/rtx6000", "librispeech/p100", "movielens-1m/a40",
          "sentiment140/rtx6000")


def child(checkout: str, problem_name: str, seed: int, data: str | None) -> None:
    """One ``bo`` run with ``tuner`` from ``checkout``; prints one JSON line."""
    sys.path.insert(0, checkout)
    sys.path.insert(1, str(HERE))
    import zeus_traces as zt

    from tuner.config import EnergySettings
    from tuner.energy import driver_watts_per_core

    steps = _count_step_tiers()
    problem = zt.load_problem(zt.data_dir(data), problem_name)
    start = time.process_time()
    run = zt.run_strategy(problem, "bo", seed, 0.1, 100, driver_watts_per_core(EnergySettings()))
    cpu = time.process_time() - start
    hv = run.hv_curve(problem)
    reach = zt.kwh_to_reach(run, hv, 0.95)
    print(json.dumps({
        "problem": problem_name, "seed": seed, "trials": len(run.configs), "cpu_per_step": cpu / len(run.configs),
        "kwh95": None if reach is None else 100 * reach / problem.grid_kwh,
        **{f"hv{b:g}": zt.hv_at(run, hv, b / 100 * problem.grid_kwh) for b in (1, 2, 5)},
        "final_hv": hv[-1] if hv else 0.0, "steps": steps,
    }), flush=True)


def _count_step_tiers() -> dict[str, int]:
    """BO steps taken per tier (full, lean), counted as the step policy observes them; empty
    for a checkout older than the step policy."""
    counts: dict[str, int] = {}
    try:
        from tuner.search.step_policy import StepPolicy
    except ImportError:
        return counts
    observe = StepPolicy.observe_step

    def counting(self, tier, cpu_s):  # type: ignore[no-untyped-def]
        counts[tier.name] = counts.get(tier.name, 0) + 1
        observe(self, tier, cpu_s)

    StepPolicy.observe_step = counting  # type: ignore[method-assign]
    return counts


def _median_worst(values: list[float | None], worst_is_max: bool) -> str:
    """Median and worst; a run that never reached 95 % counts as infinitely late."""
    filled = [math.inf if v is None else v for v in values]
    worst = max(filled) if worst_is_max else min(filled)
    return f"{statistics.median(filled):.3g} (worst {worst:.3g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a checkout of the code to compare against")
    parser.add_argument("--problems", default=",".join(SAMPLE))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--data", help="folder holding zeus/ (as zeus_traces.py --data)")
    parser.add_argument("--out", help="also append every run's JSON line here")
    parser.add_argument("--table", help="only print the table of the runs an earlier --out file holds")
    parser.add_argument("--child", nargs=3, metavar=("CHECKOUT", "PROBLEM", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.data)
        return
    if args.table:
        rows = [json.loads(line) for line in Path(args.table).read_text().splitlines() if line.strip()]
        done = {(r["problem"], r["seed"]) for r in rows if r["version"] == "before"} \
            & {(r["problem"], r["seed"]) for r in rows if r["version"] == "after"}
        print_table({v: [r for r in rows if r["version"] == v and (r["problem"], r["seed"]) in done]
                     for v in ("before", "after")})
        return
    if not args.before:
        parser.error("--before: a checkout of the code to compare against is required")
    versions = {"before": str(Path(args.before).resolve()), "after": str(ROOT)}
    results: dict[str, list[dict]] = {v: [] for v in versions}
    for seed in range(args.seeds):  # every problem once before the next seed: coverage first
        for problem in args.problems.split(","):
            extra = ["--data", args.data] if args.data else []
            procs = {v: subprocess.Popen([sys.executable, __file__, "--child", path, problem, str(seed), *extra],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                     for v, path in versions.items()}
            line = []
            for v, proc in procs.items():
                out, _ = proc.communicate()
                if proc.returncode:
                    raise SystemExit(f"the {v} run of {problem} seed {seed} failed (exit {proc.returncode}); "
                                     f"rerun it alone: {__file__} --child {versions[v]} {problem} {seed}")
                row = json.loads(out.strip().splitlines()[-1])
                results[v].append(row)
                line.append(f"{v} 95 % at {row['kwh95']}, {row['cpu_per_step']:.2f} CPU-s/step, steps {row.get('steps')}")
                if args.out:
                    with open(args.out, "a") as handle:
                        handle.write(json.dumps({"version": v, **row}) + "\n")
            print(f"  {problem} seed {seed}: " + "; ".join(line), flush=True)
    print_table(results)


def print_table(results: dict[str, list[dict]]) -> None:
    problems = list(dict.fromkeys(r["problem"] for r in results["before"]))
    cols = [("kwh95", True, "kWh% to 95 % HV"), ("hv1", False, "HV at 1 %"), ("hv2", False, "HV at 2 %"),
            ("hv5", False, "HV at 5 %"), ("cpu_per_step", True, "CPU-s per step")]
    print("\nbo on the Zeus traces, before / after (median (worst) over seeds; kWh as % of the grid's):")
    for problem in [*problems, "all"]:
        for key, worst_is_max, label in cols:
            cells = []
            for version in ("before", "after"):
                rows = [r for r in results[version] if problem in ("all", r["problem"])]
                cells.append(_median_worst([r[key] for r in rows], worst_is_max))
            print(f"  {problem:<22}{label:<18}{cells[0]:>24}{cells[1]:>24}")
    for key, _, label in cols:
        before = statistics.median(math.inf if r[key] is None else r[key] for r in results["before"])
        after = statistics.median(math.inf if r[key] is None else r[key] for r in results["after"])
        print(f"  after / before, median {label}: {after / before:.2f}x")


if __name__ == "__main__":
    main()
