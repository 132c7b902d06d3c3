"""How long one BO step takes: Ax's default settings against greentune's fast step, same process.

    python benchmarks/bo_step.py                    # fast and ax-default, 53 sequential trials each (5-25 min)
    python benchmarks/bo_step.py --trials 33 --profiles fast
    python benchmarks/bo_step.py --profiles fast,fast-plain   # what the cost-aware acquisition adds
    python benchmarks/bo_step.py --profiles fast,fast-cold    # what warm-started model fits save
    python benchmarks/bo_step.py --profiles fast --before /path/to/old/checkout --config examples/quickstart.yaml

Drives ``AxSearcher`` through its ask/tell interface (no Ray) on examples/digits.yaml's
6-parameter space with the synthetic outcomes of ``benchmarks/overhead.py``. Every step is
timed right after a completed trial was told, so each one pays for a model refit, as in a
real study. Prints the median wall and CPU seconds of the steps at about 10, 30 and 50
completed trials (the five steps around each level), and the hypervolume the completed
trials reach (as a share of the box spanned by all trials of both profiles), so that speed is not bought with search quality.
Profiles: ``fast`` (greentune's step: cost-aware acquisition, warm-started model fits, its
spend in proportion to a trial's: lean and batched against trials as cheap as these, see
``tuner/search/step_policy.py``), ``fast-full`` (every step the full one, as before the policy),
``fast-plain`` (the same step with plain qLogNEHVI), ``fast-cold`` (every fit from scratch,
as Ax does) and ``ax-default`` (Ax's own settings). ``--before CHECKOUT`` adds each profile
run with ``tuner`` from an older checkout (in a child process, one after the other), so a
change to the step is timed against the code before it in the same command; ``--config``
times another space (a parameter the synthetic outcomes know nothing of is ignored, and
``dropout`` is 0 where the space has none).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

if "--child-of" in sys.argv:  # timing an older checkout: its tuner comes first
    sys.path.insert(0, sys.argv[sys.argv.index("--child-of") + 1])
sys.path.insert(1, str(Path(__file__).resolve().parent))
sys.path.insert(2, str(Path(__file__).resolve().parents[1]))  # this checkout, after an older one

from overhead import DIGITS, _synthetic  # noqa: E402

from tuner.config import load_config  # noqa: E402
from tuner.search.ax_searcher import AxSearcher  # noqa: E402

LEVELS = (10, 30, 50)


PROFILES = ("fast", "fast-full", "fast-plain", "fast-cold", "ax-default")


def run_profile(profile: str, trials: int, seed: int, path: Path = DIGITS,
                ) -> tuple[list[float], list[float], list[tuple[float, float]]]:
    """Wall and CPU seconds of each step, and the (accuracy, energy) of each trial."""
    if profile not in PROFILES:
        raise SystemExit(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    step = "ax-default" if profile == "ax-default" else "fast"
    config = load_config(path, seed=seed)
    searcher = AxSearcher(config.tunable, config.fixed, metric=config.metric, mode=config.mode, seed=seed,
                          method="bo",
                          initial_trials=config.initial_trials, step=step,  # type: ignore[arg-type]
                          # ax-default reproduces the searcher before the fast step: raw kWh to Ax, no failure model
                          log_energy=step != "ax-default", avoid_failures=step != "ax-default",
                          cost_aware=profile != "fast-plain", warm_start=profile != "fast-cold",
                          **_full_step(profile))
    walls, cpus, points = [], [], []
    for i in range(trials):
        wall, cpu = time.perf_counter(), time.process_time()
        params = searcher.ask()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        accuracy, energy = _synthetic({"dropout": 0.0, **config.fixed, **params})
        points.append((accuracy, energy))
        searcher.tell(params, _completed(accuracy, energy))
        if i + 1 in {n + 2 for n in LEVELS}:
            print(f"    [{profile}] {i + 1} trials, last step {walls[-1]:.2f} s", flush=True)
    return walls, cpus, points


def _full_step(profile: str) -> dict:
    """``fast-full``: every step the full one, one proposal each (greentune before the step policy)."""
    if profile != "fast-full":
        return {}
    from tuner.search.step_policy import StepPolicy

    return {"step_policy": StepPolicy(share=float("inf"))}


def _completed(accuracy: float, energy: float):  # noqa: ANN202
    from tuner.search.base import Outcome

    return Outcome("completed", accuracy, energy)


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """2-D hypervolume of (accuracy max, energy min) points against ``ref`` = (worst acc, worst energy)."""
    good = sorted((e, a) for a, e in points if a > ref[0] and e < ref[1])
    volume, best = 0.0, ref[0]
    for i, (energy, accuracy) in enumerate(good):
        best = max(best, accuracy)
        upper = good[i + 1][0] if i + 1 < len(good) else ref[1]
        volume += (upper - energy) * (best - ref[0])
    return volume


def window(values: list[float], level: int) -> list[float]:
    """The five steps taken with about ``level`` completed trials."""
    return values[max(0, level - 2): level + 3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=53)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profiles", default="fast,ax-default")
    parser.add_argument("--config", type=Path, default=DIGITS, help="the study whose space is timed")
    parser.add_argument("--before", help="also time each profile with tuner from this older checkout")
    parser.add_argument("--child-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_of:  # one profile on the older checkout: print its figures for the parent
        print(json.dumps(run_profile(args.profiles, args.trials, args.seed, args.config)))
        return
    runs = [(p, None) for p in args.profiles.split(",")]
    if args.before:
        runs = [(p, args.before) for p in args.profiles.split(",")] + runs
    results = {}
    for profile, checkout in runs:
        name = f"{profile} (before)" if checkout else profile
        print(f"  running {name} ...", flush=True)
        if checkout:
            out = subprocess.run([sys.executable, __file__, "--child-of", checkout, "--profiles", profile,
                                  "--trials", str(args.trials), "--seed", str(args.seed), "--config", str(args.config)],
                                 check=True, capture_output=True, text=True).stdout
            walls, cpus, points = json.loads(out.strip().splitlines()[-1])
            results[name] = (walls, cpus, [tuple(p) for p in points])
        else:
            results[name] = run_profile(profile, args.trials, args.seed, args.config)
        walls, cpus, _ = results[name]
        print(f"  {profile}: median wall / CPU s per step " + ", ".join(
            f"{n} trials {statistics.median(window(walls, n)):.2f} / {statistics.median(window(cpus, n)):.2f}"
            for n in LEVELS if n + 3 <= args.trials), flush=True)
    all_points = [p for _, _, pts in results.values() for p in pts]
    ref = (min(a for a, _ in all_points), max(e for _, e in all_points))
    box = (max(a for a, _ in all_points) - ref[0]) * (ref[1] - min(e for _, e in all_points))
    print(f"\nBO step on the space of {args.config.name} (seed {args.seed}; median of 5 steps, each after a new result):")
    print(f"  {'profile':<16}" + "".join(f"{f'{n} trials wall/cpu':>22}" for n in LEVELS if n + 3 <= args.trials)
          + f"{'hypervolume':>14}")
    for profile, (walls, cpus, points) in results.items():
        cells = "".join(
            f"{statistics.median(window(walls, n)):>12.2f} / {statistics.median(window(cpus, n)):>5.2f} s"
            for n in LEVELS if n + 3 <= args.trials
        )
        print(f"  {profile:<16}{cells}{hypervolume(points, ref) / box:>14.3f}")
    if len(results) == 2:
        (b, (wb, cb, _)), (a, (wa, ca, _)) = results.items()
        for n in LEVELS:
            if n + 3 <= args.trials:
                ratio = statistics.median(window(wa, n)) / statistics.median(window(wb, n))
                cpu_ratio = statistics.median(window(ca, n)) / statistics.median(window(cb, n))
                print(f"  {n} trials: {a} / {b} median wall = {ratio:.2f}x, CPU = {cpu_ratio:.2f}x")
        print(f"  all {args.trials} steps: {a} / {b} total CPU = {sum(ca) / sum(cb):.2f}x "
              f"({sum(ca):.1f} / {sum(cb):.1f} s)")


if __name__ == "__main__":
    main()
