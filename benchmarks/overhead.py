"""How much the tuner itself costs: Ax step times, and the tuner's share of a study's energy.

    python benchmarks/overhead.py                 # both parts (the study takes ~2-3 min)
    python benchmarks/overhead.py --skip-study    # Ax step times only

Part 1 times ``AxSearcher.suggest`` (one Ax model fit + qLogNEHVI candidate generation)
with 10, 30 and 50 completed trials on the 6-parameter space of examples/digits.yaml, and prints
the median and p90 against the cost of a random-search step measured in the same run.
Part 2 runs the quickstart study and prints ``overhead_kwh`` as a share of its energy.
Figures are wall-clock and CPU seconds on whatever else the machine is doing: compare
the ratios, not the absolute numbers, across machines.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tuner.config import load_config
from tuner.search import Outcome, RandomSearcher, make_searcher

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
DIGITS = ROOT / "examples" / "digits.yaml"  # the space the BO step is timed on


def _synthetic(params: dict) -> tuple[float, float]:
    """A smooth stand-in for the digits trade-off: bigger and longer is better and costlier."""
    size = math.log(params["width"]) * params["depth"] * params["epochs"]
    lr_penalty = (math.log10(params["lr"]) + 2.5) ** 2
    accuracy = 1 - 0.5 * math.exp(-size / 20) - 0.05 * lr_penalty - 0.1 * params["dropout"]
    energy = 1e-6 * (2 + params["epochs"] * params["width"] ** 0.5 * params["depth"] / params["batch_size"] * 8)
    return accuracy, energy


def _complete(searcher, trial_id: str, params: dict) -> None:
    accuracy, energy = _synthetic(params)
    searcher.complete(trial_id, Outcome("completed", accuracy, energy))


def ax_step_times(levels: list[int], repeats: int, seed: int = 0) -> dict[int, list[float]]:
    """Wall seconds of one BO step with ``level`` completed trials, ``repeats`` times each."""
    config = load_config(DIGITS, seed=seed)
    searcher = make_searcher(config)
    done = 0
    times: dict[int, list[float]] = {}
    for level in levels:
        while done < level:
            trial_id = f"fill-{done}"
            _complete(searcher, trial_id, searcher.suggest(trial_id))
            done += 1
        samples = []
        for r in range(repeats):
            trial_id = f"probe-{level}-{r}"
            start = time.perf_counter()
            searcher.suggest(trial_id)
            samples.append(time.perf_counter() - start)
            searcher.complete(trial_id, Outcome("stopped"))  # abandoned
        times[level] = samples
        print(f"  {level:>3} completed: median {statistics.median(samples):.2f} s, "
              f"p90 {np.percentile(samples, 90):.2f} s  ({repeats} steps)", flush=True)
    return times


def random_step_seconds(repeats: int = 200) -> float:
    config = load_config(DIGITS)
    searcher = RandomSearcher(config.tunable, config.fixed, seed=0)
    start = time.perf_counter()
    for i in range(repeats):
        searcher.suggest(f"r{i}")
    return (time.perf_counter() - start) / repeats


def quickstart_overhead() -> None:
    import tuner

    with tempfile.TemporaryDirectory() as tmp:
        result = tuner.tune(QUICKSTART, output_dir=Path(tmp) / "quickstart", progress=False)
    trials_kwh = result.total_energy_kwh - result.overhead_kwh
    steps = result.extra["searcher_step_s"]
    durations = result.trials["duration_s"].dropna()
    print(f"  trials: {len(result.trials)}, trial energy {trials_kwh:.3g} kWh, "
          f"tuner overhead {result.overhead_kwh:.3g} kWh, total {result.total_energy_kwh:.3g} kWh")
    print(f"  overhead share of the study's energy: {result.overhead_kwh / result.total_energy_kwh:.1%}")
    print(f"  overhead / trial energy: {result.overhead_kwh / trials_kwh:.2f}")
    print(f"  searcher step: median {statistics.median(steps):.2f} s, max {max(steps):.2f} s; "
          f"median trial duration {durations.median():.1f} s "
          f"(ratio {statistics.median(steps) / durations.median():.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="BO steps timed per level")
    parser.add_argument("--skip-study", action="store_true", help="only time Ax steps")
    args = parser.parse_args()

    print("Ax generation step (Sobol+MBM, qLogNEHVI), digits space, synthetic outcomes:")
    baseline = random_step_seconds()
    times = ax_step_times([10, 30, 50], args.repeats)
    for level, samples in times.items():
        print(f"  {level:>3} completed: median step = {statistics.median(samples) / baseline:,.0f}x "
              f"a random-search step ({baseline * 1e6:.0f} us)")
    if not args.skip_study:
        print("\nQuickstart study (examples/quickstart.yaml):")
        quickstart_overhead()


if __name__ == "__main__":
    main()
