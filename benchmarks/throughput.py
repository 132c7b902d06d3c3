"""Trials per second on a local two-node Ray cluster: greentune vs plain Ray Tune.

Both run the same trivial objective with random search, the same number of trials and
the same concurrency, on the same cluster (``ray start`` head + worker on 127.0.0.1,
from tests/local_cluster.py), alternating runs in one process. The difference is what
greentune adds: the energy meter in every trial, heartbeats, the budget ledger and
gate, MLflow child runs, trials.csv and the end-of-study report, against Tune as users
run it by default (its CSV, JSON and TensorBoard loggers on; greentune keeps only JSON).

    python benchmarks/throughput.py [--trials 40] [--small 8] [--repeats 3] [--concurrency 4]

Target: greentune's trials/s within 10 % of plain Ray Tune's (ratio >= 0.90).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
os.environ.pop("MLFLOW_TRACKING_URI", None)

from tests.local_cluster import LocalCluster, MlflowServer, WorkerSpec  # noqa: E402


def trivial(params: dict) -> dict:
    """Returns at once: what is timed is everything around the objective."""
    return {"accuracy": float(params["x"])}


def plain_ray_tune(trials: int, concurrency: int, storage: Path) -> float:
    from ray import tune

    def trainable(config: dict) -> None:
        tune.report(trivial(config))

    start = time.perf_counter()
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"x": tune.uniform(0.0, 1.0)},  # BasicVariantGenerator: random search
        tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=concurrency,
                                    metric="accuracy", mode="max"),
        run_config=tune.RunConfig(storage_path=str(storage), verbose=0),
    )
    results = tuner.fit()
    elapsed = time.perf_counter() - start
    assert len(results) == trials and not results.errors
    return elapsed


def greentune_random(trials: int, concurrency: int, output: Path, tracking_uri: str | None = None) -> float:
    import tuner

    start = time.perf_counter()
    result = tuner.tune(
        {"objective": trivial, "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
         "strategy": "random", "seed": 0, "max_trials": trials, "max_concurrent_trials": concurrency,
         "resources_per_trial": {"cpu": 1}, "output_dir": output, "name": output.name,
         "mlflow": {"tracking_uri": tracking_uri}},
        budget_kwh=1.0,
        progress=False,
    )
    elapsed = time.perf_counter() - start
    assert len(result.trials) == trials and (result.trials["status"] == "completed").all()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", type=int, default=8, help="trials in the short runs that size fixed costs")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--tracking-server", action="store_true",
                        help="log to one `mlflow server` (as on a cluster) instead of a new SQLite store per study")
    args = parser.parse_args()

    import ray

    half = max(1, args.concurrency // 2)
    with ExitStack() as stack:
        cluster = stack.enter_context(
            LocalCluster.start(head_cpus=half, workers=[WorkerSpec(num_cpus=args.concurrency - half)]))
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="gt-throughput-"))
        uri = stack.enter_context(MlflowServer.start(Path(scratch) / "mlflow")).uri if args.tracking_server else None
        ray.init(address=cluster.address, logging_level="WARNING")

        def greentune_run(n: int, name: str) -> float:
            return greentune_random(n, args.concurrency, Path(scratch) / name, uri)

        try:
            print(f"cluster: 2 nodes, {args.concurrency} CPUs; {args.trials} trials per run, "
                  f"{args.concurrency} at a time; MLflow: {uri or 'a new SQLite store per study'}; "
                  "warm-up run of each first")
            plain_ray_tune(4, args.concurrency, Path(scratch) / "warm-plain")
            greentune_run(4, "warm-greentune")
            plain, green, plain_small, green_small = [], [], [], []
            for i in range(args.repeats):  # alternate, so drift on a shared machine hits both
                plain.append(plain_ray_tune(args.trials, args.concurrency, Path(scratch) / f"plain-{i}"))
                green.append(greentune_run(args.trials, f"greentune-{i}"))
                plain_small.append(plain_ray_tune(args.small, args.concurrency, Path(scratch) / f"plain-s{i}"))
                green_small.append(greentune_run(args.small, f"green-s{i}"))
                print(f"  round {i + 1}: {args.trials} trials: plain Ray Tune {plain[-1]:.1f} s, greentune "
                      f"{green[-1]:.1f} s; {args.small} trials: plain {plain_small[-1]:.1f} s, "
                      f"greentune {green_small[-1]:.1f} s")
        finally:
            ray.shutdown()
    plain_rate, green_rate = args.trials / statistics.median(plain), args.trials / statistics.median(green)
    print(f"plain Ray Tune, random search: {plain_rate:.2f} trials/s (median of {args.repeats} runs)")
    print(f"greentune, strategy: random:   {green_rate:.2f} trials/s (median of {args.repeats} runs)")
    ratio = green_rate / plain_rate
    print(f"throughput ratio greentune / plain: {ratio:.3f} "
          f"({'meets' if ratio >= 0.9 else 'misses'} the 10 % target)")
    # Per-trial cost without the fixed start/finish costs: slope between the two sizes.
    extra = args.trials - args.small
    plain_marginal = extra / (statistics.median(plain) - statistics.median(plain_small))
    green_marginal = extra / (statistics.median(green) - statistics.median(green_small))
    fixed = (statistics.median(green_small) - args.small / green_marginal) - (
        statistics.median(plain_small) - args.small / plain_marginal)
    print(f"marginal trials/s (fixed costs removed): plain {plain_marginal:.2f}, greentune {green_marginal:.2f}, "
          f"ratio {green_marginal / plain_marginal:.3f}; greentune's extra fixed cost per study {fixed:.1f} s")


if __name__ == "__main__":
    main()
