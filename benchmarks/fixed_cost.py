"""What a trial costs before it does any work: plain Ray Tune against greentune.

The same trivial objective (it returns at once) runs N times with random search and the
same concurrency, through plain Ray Tune as users run it by default (its CSV, JSON and
TensorBoard loggers, a new actor per trial) and through ``tuner.tune`` (energy window,
heartbeats, ledger, MLflow child runs, trials.csv, the report), with greentune's trial
processes reused across trials and, as the ablation, started anew for each. Runs
alternate in one process on one local Ray.

What is counted is every CPU-second the run cost on this machine: the driver and every
process under it (Ray's GCS, raylet and workers, reaped workers included), so the actor
start, the imports and Ray's own bookkeeping all count, as they do on a user's bill.
Energy uses greentune's CPU-time estimate (``--watts-per-core``, 10 W by default).

    python benchmarks/fixed_cost.py [--trials 24] [--concurrency 2] [--repeats 3] [--no-quickstart]

Then, in the same run, the quickstart study (``examples/quickstart.yaml``): its wall
time, its median trial's energy against the trivial trial's all-in energy, the span of
its trials' energies, and the tuner's own share of its kWh.

Goals (issue 21): greentune's all-in energy per trivial trial at most 1.2x plain Ray
Tune's and at most 10 % of the quickstart's median trial; trials per minute within 10 %
of plain Ray Tune's; the quickstart under 3 minutes with the tuner at most 3 % of its kWh.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.pop("MLFLOW_TRACKING_URI", None)

J_PER_KWH = 3.6e6


def trivial(params: dict) -> dict:
    """Returns at once: what is measured is everything around the objective."""
    return {"accuracy": float(params["x"])}


def tree_cpu_seconds() -> float:
    """CPU seconds of this process and every process under it, reaped children included."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:  # exited between listing and reading
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def plain_ray_tune(trials: int, concurrency: int, storage: Path) -> None:
    from ray import tune

    def trainable(config: dict) -> None:
        tune.report(trivial(config))

    tuner = tune.Tuner(
        trainable,
        param_space={"x": tune.uniform(0.0, 1.0)},
        tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=concurrency,
                                    metric="accuracy", mode="max"),
        run_config=tune.RunConfig(storage_path=str(storage), name="plain", verbose=0),
    )
    tuner.fit()


def greentune(trials: int, concurrency: int, storage: Path, reuse: bool) -> None:
    import tuner

    tuner.tune(
        {"objective": trivial, "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
         "strategy": "random", "seed": 0, "max_trials": trials, "max_concurrent_trials": concurrency,
         "reuse_trial_processes": reuse, "output_dir": storage / "study"},
        budget_kwh=1.0, progress=False,
    )


def measure(run: Callable[[Path], None]) -> tuple[float, float]:
    """(wall seconds, tree CPU seconds) of one run."""
    with tempfile.TemporaryDirectory() as tmp:
        cpu, wall = tree_cpu_seconds(), time.perf_counter()
        run(Path(tmp))
        return time.perf_counter() - wall, tree_cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--watts-per-core", type=float, default=10.0)
    parser.add_argument("--no-quickstart", action="store_true", help="skip the quickstart study")
    args = parser.parse_args()

    import ray

    ray.init(include_dashboard=False, logging_level="WARNING")
    n, c = args.trials, args.concurrency
    runs: dict[str, Callable[[Path], None]] = {
        "plain Ray Tune": lambda p: plain_ray_tune(n, c, p),
        "greentune": lambda p: greentune(n, c, p, reuse=True),
        "greentune, a process per trial": lambda p: greentune(n, c, p, reuse=False),
    }
    for name, run in runs.items():  # warm-up: imports, first actor, MLflow tables
        measure(run)
        print(f"warmed up: {name}", flush=True)
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for repeat in range(args.repeats):
        for name, run in runs.items():
            figures[name].append(measure(run))
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)

    base_wall = statistics.median(w for w, _ in figures["plain Ray Tune"])
    base_cpu = statistics.median(c for _, c in figures["plain Ray Tune"])
    print(f"\n{n} trivial trials, {c} at a time, median of {args.repeats} alternating runs "
          f"(energy at {args.watts_per_core:g} W per busy core):")
    print(f"{'':32} {'trials/min':>10} {'ratio':>6} {'CPU-s/trial':>12} {'kWh/trial':>10} {'ratio':>6}")
    for name, samples in figures.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        kwh = cpu / n * args.watts_per_core / J_PER_KWH
        print(f"{name:32} {60 * n / wall:10.1f} {base_wall / wall:6.2f} {cpu / n:12.2f} {kwh:10.2e} "
              f"{cpu / base_cpu:6.2f}")
    print("\nratio: trials/min against plain Ray Tune's (>= 0.90 is the goal); "
          "energy per trial against plain Ray Tune's (<= 1.2 is the goal)")
    if not args.no_quickstart:
        trivial_kwh = statistics.median(c for _, c in figures["greentune"]) / n * args.watts_per_core / J_PER_KWH
        quickstart(trivial_kwh)


def quickstart(trivial_kwh: float) -> None:
    """Run examples/quickstart.yaml once and print what issue 21 asks of it."""
    import tuner

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = tuner.tune(REPO / "examples" / "quickstart.yaml", output_dir=Path(tmp) / "quickstart", progress=False)
        wall = time.perf_counter() - start
    done = result.completed["energy_kwh"]
    share = result.overhead_kwh / result.total_energy_kwh
    print(f"\nquickstart (examples/quickstart.yaml): {len(result.trials)} trials in {wall:.0f} s wall "
          f"(goal <= 180 s), {result.total_energy_kwh:.3g} kWh of {result.budget_kwh:.3g}")
    print(f"  completed trials' energy: median {done.median():.3g} kWh, min {done.min():.3g}, max {done.max():.3g} "
          f"(span {done.max() / done.min():.0f}x; goal >= 10x)")
    print(f"  trivial trial, all in, against the quickstart's median trial: {trivial_kwh / done.median():.1%} "
          "(goal <= 10 %)")
    print(f"  tuner's own share of the study's kWh: {share:.1%} (goal <= 3 %)")
    knee = result.knee()
    if knee is not None:
        print(f"  knee: accuracy {knee['accuracy']:.3f} at {knee['energy_kwh']:.3g} kWh "
              f"(best {result.completed['accuracy'].max():.3f})")


if __name__ == "__main__":
    main()
