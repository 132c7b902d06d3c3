"""Search efficiency per kWh on real GPU measurements (the Zeus NSDI 2023 traces).

    python benchmarks/zeus_traces.py                           # 3 problems x 5 seeds, all strategies
    python benchmarks/zeus_traces.py --problems squad/rtx6000 --seeds 2 --strategies bo,random
    python benchmarks/zeus_traces.py --data /path/to/shared/data --plot zeus.png

The problem: tune batch size, GPU power limit and the number of epochs of one workload on
one GPU. A trial's accuracy is the best target metric one sampled seed run of the trace
reached by that epoch (``summary_train.csv``); its energy is epochs x time_per_epoch x
average_power (``summary_power_<gpu>.csv``). Nothing trains: the objective returns the
energy itself (source ``reported``). Definitions, so that figures are comparable:

- hypervolume on (accuracy, log10 kWh), both normalised to [0, 1] over the whole space,
  reference point (lowest accuracy, highest log kWh); every evaluated configuration counts
  at its *expected* accuracy (mean over the trace's runs), so noise cannot inflate it;
- the true front comes from enumerating the whole space;
- grid: all batch sizes x power limits x 5 evenly spaced epoch levels, in random order;
- budgets are fractions of the full grid's kWh; cifar100 is capped at 100 epochs.

Every strategy is driven through its ask/tell interface in this one process (no Ray):
greentune's own ``AxSearcher`` (``bo``), ``GridSearcher`` and ``RandomSearcher`` (the
classes ``tune()`` uses), and Optuna's TPE and NSGA-II through Optuna's own API. Each
strategy is charged its driver CPU time (every ask and tell) at the ledger's watts per core
(``tuner.energy.driver_watts_per_core``), so the tuner's own overhead counts in its kWh.
``bo`` gets the run's kWh and trial caps as its ``budget_kwh`` and ``max_trials`` (its
cost-aware acquisition cools over them, as in ``tune()``); ``--no-cost-aware`` gives the plain
qLogNEHVI ablation, ``--no-warm-start`` fits the model from scratch on every step. ``bo+es`` is
``bo`` with per-epoch reports and greentune's Pareto early stopping
(``tuner.search.early_stopping``); a stopped trial counts as the configuration it ran.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
PROBLEMS = ("cifar100/v100", "imagenet/a40", "squad/rtx6000")
WORKLOADS = ("cifar100", "imagenet", "librispeech", "movielens-1m", "squad", "sentiment140")
GPUS = ("a40", "p100", "rtx6000", "v100")
ALL_PROBLEMS = tuple(f"{w}/{g}" for w in WORKLOADS for g in GPUS)  # the 24 workload x GPU pairs
STRATEGIES = ("bo", "bo+es", "grid", "random", "tpe", "nsga2")
BUDGETS = (0.01, 0.02, 0.05)
EPOCH_CAP = {"cifar100": 100}
GRID_EPOCH_LEVELS = 5


# ----------------------------------------------------------------------------- problem


@dataclass
class TraceProblem:
    """One workload on one GPU, enumerated: every (batch size, power limit, epochs) point."""

    name: str
    batch_sizes: list[int]
    power_limits: list[int]
    max_epochs: int
    curves: dict[int, np.ndarray]  # batch size -> (runs, max_epochs + 1) accuracy by epoch
    epoch_kwh: dict[tuple[int, int], float]  # (batch size, power limit) -> kWh of one epoch
    acc_range: tuple[float, float] = (0.0, 1.0)
    log_kwh_range: tuple[float, float] = (0.0, 1.0)
    true_hv: float = 0.0
    grid_kwh: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def expected_accuracy(self, batch_size: int, epochs: int) -> float:
        return float(self.curves[batch_size][:, epochs].mean())

    def energy_kwh(self, batch_size: int, power_limit: int, epochs: int) -> float:
        return epochs * self.epoch_kwh[(batch_size, power_limit)]

    def normalised(self, batch_size: int, power_limit: int, epochs: int) -> tuple[float, float]:
        """(accuracy, log10 kWh) of a configuration, both in [0, 1] over the whole space."""
        acc = self.expected_accuracy(batch_size, epochs)
        log_kwh = math.log10(self.energy_kwh(batch_size, power_limit, epochs))
        (a0, a1), (e0, e1) = self.acc_range, self.log_kwh_range
        return (acc - a0) / (a1 - a0), (log_kwh - e0) / (e1 - e0)

    def hv_fraction(self, configs: list[tuple[int, int, int]]) -> float:
        return hypervolume([self.normalised(*c) for c in configs]) / self.true_hv

    def grid_configs(self) -> list[tuple[int, int, int]]:
        return [(b, p, e) for b in self.batch_sizes for p in self.power_limits for e in self.epoch_levels()]

    def epoch_levels(self) -> list[int]:
        from tuner.config import IntRange
        from tuner.search.baselines import grid_levels

        return grid_levels(IntRange(type="int", low=1, high=self.max_epochs), GRID_EPOCH_LEVELS)


def accuracy_curves(train: pd.DataFrame, max_epochs: int) -> np.ndarray:
    """Best target metric each run reached by each epoch (0 before the first one), runs x epochs."""
    rows = []
    for _, run in train.groupby("run"):
        curve = np.zeros(max_epochs + 1)
        for metric, epoch in zip(run["target_metric"], run["target_epoch"], strict=True):
            if not math.isnan(epoch) and epoch <= max_epochs:
                curve[int(epoch):] = np.maximum(curve[int(epoch):], metric)
        rows.append(curve)
    return np.array(rows)


def load_problem(data_dir: Path, name: str) -> TraceProblem:
    """Build ``dataset/gpu`` from the traces: the batch sizes both traces share, every power limit."""
    dataset, gpu = name.split("/")
    zeus = data_dir / "zeus"
    train = pd.read_csv(zeus / "summary_train.csv")
    power = pd.read_csv(zeus / f"summary_power_{gpu}.csv")
    train, power = train[train["dataset"] == dataset], power[power["dataset"] == dataset]
    if train.empty or power.empty:
        raise SystemExit(f"no traces for {name!r} in {zeus}")
    optimizer = train["optimizer"].iloc[0].lower()
    power = power[power["optimizer"].str.lower() == optimizer]
    batch_sizes = sorted(set(train["batch_size"]) & set(power["batch_size"]))
    max_epochs = int(np.nanmax(train["target_epoch"]))
    max_epochs = min(max_epochs, EPOCH_CAP.get(dataset, max_epochs))
    curves = {b: accuracy_curves(train[train["batch_size"] == b], max_epochs) for b in batch_sizes}
    epoch_kwh = {
        (int(r.batch_size), int(r.power_limit)): r.time_per_epoch * r.average_power / 3.6e6
        for r in power.itertuples() if r.batch_size in batch_sizes
    }
    epoch_s = {(int(r.batch_size), int(r.power_limit)): float(r.time_per_epoch)
               for r in power.itertuples() if r.batch_size in batch_sizes}
    power_limits = sorted({p for _, p in epoch_kwh})
    # A batch size the power trace lacks some power limits for (movielens-1m/rtx6000 has
    # batch size 4 at 250 and 260 W only) leaves the space; the rest stay a full product.
    incomplete = sorted({b for b in batch_sizes for p in power_limits if (b, p) not in epoch_kwh})
    batch_sizes = [b for b in batch_sizes if b not in incomplete]
    if not batch_sizes:
        raise SystemExit(f"{name}: no batch size has every power limit in the power trace")
    problem = TraceProblem(name, [int(b) for b in batch_sizes], [int(p) for p in power_limits],
                           max_epochs, curves, epoch_kwh)
    problem.extra["epoch_s"] = epoch_s
    problem.extra["dropped_batch_sizes"] = incomplete
    everything = [(b, p, e) for b in batch_sizes for p in power_limits for e in range(1, max_epochs + 1)]
    accs = [problem.expected_accuracy(b, e) for b, _, e in everything]
    logs = [math.log10(problem.energy_kwh(*c)) for c in everything]
    problem.acc_range, problem.log_kwh_range = (min(accs), max(accs)), (min(logs), max(logs))
    # No run of the shared batch sizes reached a target (librispeech on p100 and rtx6000):
    # accuracy is flat, so hypervolume is undefined there; the energy side still stands.
    flat = problem.acc_range[1] <= problem.acc_range[0]
    problem.true_hv = math.nan if flat else hypervolume([problem.normalised(*c) for c in everything])
    problem.grid_kwh = sum(problem.energy_kwh(*c) for c in problem.grid_configs())
    problem.extra["space_size"] = len(everything)
    return problem


def hypervolume(points: list[tuple[float, float]]) -> float:
    """Area dominated by (accuracy up, log kWh down) points in the unit square, reference (0, 1)."""
    volume, best = 0.0, 0.0
    ordered = sorted(points, key=lambda p: p[1])
    for i, (acc, energy) in enumerate(ordered):
        best = max(best, acc)
        upper = ordered[i + 1][1] if i + 1 < len(ordered) else 1.0
        volume += (upper - energy) * best
    return volume


# ----------------------------------------------------------------------------- strategies


class Strategy:
    """ask() -> (batch size, power limit, epochs) or None when exhausted; tell(config, acc, kwh)."""

    def ask(self) -> tuple[int, int, int] | None: ...

    def tell(self, config: tuple[int, int, int], ran: tuple[int, int, int], accuracy: float | None,
             kwh: float) -> None: ...


def greentune_space(problem: TraceProblem, log_epochs: bool) -> dict[str, Any]:
    from tuner.config import Choice, IntRange

    return {
        "batch_size": Choice(type="choice", values=problem.batch_sizes, ordered=True),
        "power_limit": Choice(type="choice", values=problem.power_limits, ordered=True),
        "epochs": IntRange(type="int", low=1, high=problem.max_epochs, log=log_epochs),
    }


class Greentune(Strategy):
    """A greentune searcher through the same ask/tell seam ``tune()`` drives via Ray."""

    def __init__(self, searcher: Any) -> None:
        self.searcher = searcher
        self._params: dict[tuple, dict] = {}

    def ask(self) -> tuple[int, int, int] | None:
        from ray.tune.search import Searcher

        params = self.searcher.ask()
        if params == Searcher.FINISHED or params is None:
            return None
        config = (int(params["batch_size"]), int(params["power_limit"]), int(params["epochs"]))
        self._params[config] = params
        return config

    def tell(self, config, ran, accuracy, kwh) -> None:  # noqa: ANN001
        from tuner.search.base import Outcome

        params = self._params.pop(config)
        if ran != config and hasattr(self.searcher, "tell_ran"):
            self.searcher.tell_ran(params, {**params, "epochs": ran[2]}, Outcome("completed", accuracy, kwh))
        else:
            self.searcher.tell(params, Outcome("completed", accuracy, kwh))


class OptunaStrategy(Strategy):
    """Optuna's multi-objective samplers through ``study.ask``/``study.tell``."""

    def __init__(self, problem: TraceProblem, sampler: str, seed: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler_obj = (optuna.samplers.TPESampler(seed=seed) if sampler == "tpe"
                       else optuna.samplers.NSGAIISampler(seed=seed))
        self.study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler_obj)
        self.problem, self._trials = problem, {}

    def ask(self) -> tuple[int, int, int] | None:
        trial = self.study.ask()
        config = (trial.suggest_categorical("batch_size", self.problem.batch_sizes),
                  trial.suggest_categorical("power_limit", self.problem.power_limits),
                  trial.suggest_int("epochs", 1, self.problem.max_epochs, log=EPOCHS_LOG))
        self._trials[config] = trial
        return config

    def tell(self, config, ran, accuracy, kwh) -> None:  # noqa: ANN001
        self.study.tell(self._trials.pop(config), [accuracy, math.log10(kwh)])


def make_strategy(name: str, problem: TraceProblem, seed: int, budget_kwh: float, max_trials: int) -> Strategy:
    from tuner.search import GridSearcher, RandomSearcher

    space = greentune_space(problem, EPOCHS_LOG)
    if name in ("bo", "bo+es"):
        import logging

        from ax.utils.common.logger import set_stderr_log_level

        from tuner.search.ax_searcher import AxSearcher

        # the run's kWh and trial caps are the study's budget_kwh and max_trials, as tune() passes them
        searcher = AxSearcher(space, metric="accuracy", mode="max", seed=seed, method="bo", step=STEP_PROFILE,
                              budget_kwh=budget_kwh, max_trials=max_trials, cost_aware=COST_AWARE,
                              warm_start=WARM_START)
        set_stderr_log_level(logging.ERROR)  # Ax warns each time a small space is nearly exhausted
        return Greentune(searcher)
    if name == "grid":
        # the grid: evenly spaced epoch levels, whatever the others use
        return Greentune(GridSearcher(greentune_space(problem, False), seed=seed, resolution=GRID_EPOCH_LEVELS))
    if name == "random":
        return Greentune(RandomSearcher(space, seed=seed))
    return OptunaStrategy(problem, name, seed)


STEP_PROFILE = "fast"
COST_AWARE = True  # --no-cost-aware: plain qLogNEHVI, for the ablation
WARM_START = True  # --no-warm-start: every model fit from scratch, as Ax does
EPOCHS_LOG = True  # epochs searched on a log scale by every strategy but grid (--epochs-scale)


# ----------------------------------------------------------------------------- one run


@dataclass
class Run:
    """What one strategy found, in order: cumulative kWh (with overhead) after each trial."""

    spent_kwh: list[float] = field(default_factory=list)
    configs: list[tuple[int, int, int]] = field(default_factory=list)
    overhead_kwh: float = 0.0
    trial_kwh: float = 0.0
    saved_kwh: float = 0.0  # energy early stopping did not spend

    def hv_curve(self, problem: TraceProblem) -> list[float]:
        return [problem.hv_fraction(self.configs[: i + 1]) for i in range(len(self.configs))]


def run_strategy(problem: TraceProblem, name: str, seed: int, max_fraction: float, max_trials: int,
                 watts_per_core: float) -> Run:
    """Sequential trials until ``max_fraction`` of the grid's kWh or ``max_trials`` is spent."""
    rng = np.random.default_rng(seed + 1000)
    budget = max_fraction * problem.grid_kwh
    cpu = time.process_time()
    strategy = make_strategy(name, problem, seed, budget, max_trials)
    run = Run()
    cpu_seconds = time.process_time() - cpu
    front: list[tuple[float, float]] = []  # (kWh, observed accuracy) of finished trials
    while run.spent_kwh[-1:] < [budget] and len(run.configs) < max_trials:
        cpu = time.process_time()
        config = strategy.ask()
        cpu_seconds += time.process_time() - cpu
        if config is None:
            break
        batch, power, epochs = config
        curve = problem.curves[batch][rng.integers(len(problem.curves[batch]))]
        ran = epochs
        if name == "bo+es":
            ran = _early_stop_epoch(problem, config, curve, front)
        accuracy, kwh = float(curve[ran]), problem.energy_kwh(batch, power, ran)
        front.append((kwh, accuracy))
        run.saved_kwh += problem.energy_kwh(*config) - kwh
        cpu = time.process_time()
        strategy.tell(config, (batch, power, ran), accuracy, kwh)
        cpu_seconds += time.process_time() - cpu
        run.overhead_kwh = cpu_seconds * watts_per_core / 3.6e6
        run.trial_kwh += kwh
        run.configs.append((batch, power, ran))
        run.spent_kwh.append(run.trial_kwh + run.overhead_kwh)
    return run


def _early_stop_epoch(problem: TraceProblem, config: tuple[int, int, int], curve: np.ndarray,
                      front: list[tuple[float, float]]) -> int:
    """The epoch greentune's Pareto rule stops this trial at, seeing one report per epoch."""
    from tuner.search.early_stopping import should_stop

    batch, power, epochs = config
    per_epoch = problem.epoch_kwh[(batch, power)]
    reports: list[tuple[float, float]] = []
    for epoch in range(1, epochs + 1):
        reports.append((epoch * per_epoch, float(curve[epoch])))
        if epoch < epochs and should_stop(reports, front, horizon_kwh=epochs * per_epoch):
            return epoch
    return epochs


# ----------------------------------------------------------------------------- summary


def kwh_to_reach(run: Run, hv: list[float], target: float) -> float | None:
    for spent, value in zip(run.spent_kwh, hv, strict=True):
        if value >= target:
            return spent
    return None


def hv_at(run: Run, hv: list[float], kwh: float) -> float:
    best = 0.0
    for spent, value in zip(run.spent_kwh, hv, strict=True):
        if spent > kwh:
            break
        best = value
    return best


def summarise(problem: TraceProblem, runs: dict[str, list[Run]]) -> list[dict[str, Any]]:
    rows = []
    for name, seeds in runs.items():
        curves = [r.hv_curve(problem) for r in seeds]
        row: dict[str, Any] = {"problem": problem.name, "strategy": name}
        for b in BUDGETS:
            row[f"hv@{b:.0%}"] = [hv_at(r, c, b * problem.grid_kwh) for r, c in zip(seeds, curves, strict=True)]
        for t in (0.90, 0.95):
            row[f"kwh%->{t:.0%}"] = [
                None if (k := kwh_to_reach(r, c, t)) is None else 100 * k / problem.grid_kwh
                for r, c in zip(seeds, curves, strict=True)
            ]
        row["trials"] = [len(r.configs) for r in seeds]
        row["overhead%"] = [100 * r.overhead_kwh / problem.grid_kwh for r in seeds]
        row["saved%"] = [100 * r.saved_kwh / problem.grid_kwh for r in seeds]
        row["final_hv"] = [c[-1] if c else 0.0 for c in curves]
        rows.append(row)
    return rows


def _fmt(values: list[float | None], digits: int = 2) -> str:
    """Median [min-max] over seeds; 'never' when the median seed never got there."""
    reached = sorted(v for v in values if v is not None)
    if len(reached) * 2 <= len(values) - (len(values) % 2 == 0):
        return f"never ({len(reached)}/{len(values)})"
    filled = sorted(values, key=lambda v: math.inf if v is None else v)
    median = filled[(len(filled) - 1) // 2] if len(filled) % 2 else statistics.median(
        [math.inf if v is None else v for v in filled])
    top = "never" if None in values else f"{reached[-1]:.{digits}f}"
    return f"{median:.{digits}f} [{reached[0]:.{digits}f}-{top}]"


def print_table(rows: list[dict[str, Any]], max_fraction: float, bo_fraction: float) -> None:
    cols = [f"hv@{b:.0%}" for b in BUDGETS] + ["kwh%->90%", "kwh%->95%", "final_hv", "overhead%", "saved%", "trials"]
    print(f"{'problem':<15}{'strategy':<9}" + "".join(f"{c:>22}" for c in cols))
    for row in rows:
        cells = "".join(f"{_fmt(row[c], 3 if c.startswith('hv') or c == 'final_hv' or c == 'overhead%' else 1):>22}"
                        for c in cols)
        print(f"{row['problem']:<15}{row['strategy']:<9}{cells}")
    print(f"(median [min-max] over seeds; kWh as % of the full grid's, tuner overhead included; runs stop at "
          f"{max_fraction:.0%} of the grid's kWh ({bo_fraction:.0%} for bo) or the trial cap; "
          "'never (k/n)': k of n seeds reached it within that)")


def plot(problems: list[TraceProblem], all_runs: dict[str, dict[str, list[Run]]], path: Path,
         max_fraction: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(problems), figsize=(5 * len(problems), 4), squeeze=False)
    grid_x = np.geomspace(0.002, max_fraction, 200)
    for ax, problem in zip(axes[0], problems, strict=True):
        for name, seeds in all_runs[problem.name].items():
            ys = np.array([[hv_at(r, c, x * problem.grid_kwh) for x in grid_x]
                           for r, c in ((r, r.hv_curve(problem)) for r in seeds)])
            median = np.median(ys, axis=0)
            ax.plot(100 * grid_x, median, label=name)
            ax.fill_between(100 * grid_x, ys.min(axis=0), ys.max(axis=0), alpha=0.15)
        ax.axhline(0.95, color="grey", lw=0.5, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("kWh spent, % of the full grid's")
        ax.set_ylabel("hypervolume / true front's")
        ax.set_title(problem.name)
        ax.set_ylim(0, 1.02)
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def data_dir(flag: str | None) -> Path:
    path = Path(flag or os.environ.get("GREENTUNE_DATA") or DEFAULT_DATA)
    if not (path / "zeus" / "summary_train.csv").is_file():
        raise SystemExit(f"Zeus traces not found under {path / 'zeus'}: pass --data DIR or set GREENTUNE_DATA "
                         "to the folder holding zeus/summary_train.csv")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder holding zeus/ (default: $GREENTUNE_DATA or ../shared/data)")
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-fraction", type=float, default=0.5, help="stop at this share of the grid's kWh")
    parser.add_argument("--max-trials", type=int, default=400, help="trial cap for every strategy")
    parser.add_argument("--bo-max-trials", type=int, default=100, help="trial cap for bo strategies")
    parser.add_argument("--bo-max-fraction", type=float, default=0.1,
                        help="bo strategies stop at this share of the grid's kWh (their steps cost minutes)")
    parser.add_argument("--plot", default="zeus_traces.png", help="PNG path for the hypervolume curves")
    parser.add_argument("--step", default="fast", choices=["fast", "ax-default"], help="AxSearcher step profile")
    parser.add_argument("--epochs-scale", default="log", choices=["log", "linear"],
                        help="how every strategy but grid searches epochs")
    parser.add_argument("--no-cost-aware", action="store_true",
                        help="bo ranks candidates by hypervolume gain alone, not gain per predicted kWh")
    parser.add_argument("--no-warm-start", action="store_true", help="bo fits its model from scratch on every step")
    args = parser.parse_args()
    global STEP_PROFILE, EPOCHS_LOG, COST_AWARE, WARM_START
    STEP_PROFILE, EPOCHS_LOG, COST_AWARE = args.step, args.epochs_scale == "log", not args.no_cost_aware
    WARM_START = not args.no_warm_start
    from tuner.config import EnergySettings
    from tuner.energy import driver_watts_per_core

    data = data_dir(args.data)
    watts = driver_watts_per_core(EnergySettings())
    problems = [load_problem(data, name) for name in args.problems.split(",")]
    all_runs: dict[str, dict[str, list[Run]]] = {}
    rows = []
    for problem in problems:
        print(f"{problem.name}: {len(problem.batch_sizes)} batch sizes x {len(problem.power_limits)} power limits"
              f" x {problem.max_epochs} epochs = {problem.extra['space_size']} points; full grid "
              f"{len(problem.grid_configs())} points, {problem.grid_kwh:.3g} kWh; driver {watts:g} W/core",
              flush=True)
        runs: dict[str, list[Run]] = {}
        for name in args.strategies.split(","):
            bo = name.startswith("bo")
            cap = args.bo_max_trials if bo else args.max_trials
            fraction = args.bo_max_fraction if bo else args.max_fraction
            runs[name] = []
            for seed in range(args.seeds):
                start = time.perf_counter()
                runs[name].append(run_strategy(problem, name, seed, fraction, cap, watts))
                print(f"  {name} seed {seed}: {len(runs[name][-1].configs)} trials, "
                      f"{time.perf_counter() - start:.0f} s", flush=True)
        all_runs[problem.name] = runs
        rows += summarise(problem, runs)
    print()
    print_table(rows, args.max_fraction, args.bo_max_fraction)
    if args.plot:
        plot(problems, all_runs, Path(args.plot), args.max_fraction)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    sys.exit(main())
