"""Do failures trap the search? A mixed boolean/categorical space where about 20% fails.

    python benchmarks/failures.py                 # 100 trials x 5 seeds per strategy
    python benchmarks/failures.py --seeds 2 --strategies bo,random

A synthetic network-training stand-in with a boolean, two categorical, an ordered choice
and an integer parameter (1,280 configurations). Some regions fail, as out-of-memory
batches or unstable optimiser/activation pairs do, and the best accuracies sit next to the
out-of-memory region. Every strategy is driven through ask/tell in this process (no Ray):
greentune ``bo`` (``AxSearcher``, failures told to Ax as failed, plus its failure model and
dedupe), ``bo-plain`` (the same without them: ``avoid_failures=False``), ``random``
(``RandomSearcher``) and Optuna's multi-objective TPE (failed trials told as
``TrialState.FAIL``). Prints per 100 trials: the share that failed, the distinct
configurations tried, and the distinct failed configurations proposed again.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from typing import Any

from tuner.config import Choice, IntRange

SPACE: dict[str, Any] = {
    "batch_norm": Choice(type="choice", values=[True, False]),
    "activation": Choice(type="choice", values=["relu", "gelu", "tanh", "silu"]),
    "optimizer": Choice(type="choice", values=["sgd", "adam", "adamw", "rmsprop"]),
    "width": Choice(type="choice", values=[64, 128, 256, 512, 1024], ordered=True),
    "depth": IntRange(type="int", low=1, high=8),
}


def fails(p: dict[str, Any]) -> bool:
    """Out of memory when wide and deep; two unstable optimiser/activation combinations."""
    return ((p["width"] >= 512 and p["depth"] >= 6)
            or (p["optimizer"] == "sgd" and p["activation"] == "tanh" and not p["batch_norm"])
            or (p["optimizer"] == "rmsprop" and p["activation"] == "gelu"))


def outcome(p: dict[str, Any]) -> tuple[float, float]:
    """(accuracy, kWh): bigger is better and costlier; adam-family and batch norm help."""
    size = p["width"].bit_length() - 6 + p["depth"]  # 1 .. 13
    accuracy = (0.6 + 0.025 * size + {"adam": 0.04, "adamw": 0.05, "sgd": 0.0, "rmsprop": 0.02}[p["optimizer"]]
                + (0.03 if p["batch_norm"] else 0.0) + {"relu": 0.01, "gelu": 0.02, "tanh": -0.02, "silu": 0.02}[
                    p["activation"]])
    return accuracy, 1e-3 * p["width"] * p["depth"] * (1.1 if p["batch_norm"] else 1.0)


def all_configs() -> list[dict[str, Any]]:
    names = list(SPACE)
    levels = [SPACE[n].values if isinstance(SPACE[n], Choice) else range(SPACE[n].low, SPACE[n].high + 1)
              for n in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*levels)]


def key(p: dict[str, Any]) -> tuple:
    return tuple(p[n] for n in SPACE)


def run(strategy: str, seed: int, trials: int) -> dict[str, float]:
    from tuner.search.base import Outcome

    tried, failed_keys = [], set()
    repeats_of_failed = 0
    if strategy == "tpe":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(directions=["maximize", "minimize"],
                                    sampler=optuna.samplers.TPESampler(seed=seed))
    else:
        searcher = _greentune(strategy, seed)
    for _ in range(trials):
        if strategy == "tpe":
            trial = study.ask()
            params = {n: (trial.suggest_categorical(n, s.values) if isinstance(s, Choice)
                          else trial.suggest_int(n, s.low, s.high)) for n, s in SPACE.items()}
        else:
            params = searcher.ask()
        failed = fails(params)
        repeats_of_failed += key(params) in failed_keys
        tried.append(key(params))
        if failed:
            failed_keys.add(key(params))
        if strategy == "tpe":
            if failed:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, list(outcome(params)))
        else:
            searcher.tell(params, Outcome("failed", error="simulated") if failed
                          else Outcome("completed", *outcome(params)))
    n_failed = sum(1 for k in tried if k in failed_keys)
    return {"failed": 100 * n_failed / trials, "distinct": 100 * len(set(tried)) / trials,
            "failed_repeats": 100 * repeats_of_failed / trials}


def _greentune(strategy: str, seed: int) -> Any:
    if strategy == "random":
        from tuner.search import RandomSearcher

        return RandomSearcher(SPACE, seed=seed)
    import logging

    from ax.utils.common.logger import set_stderr_log_level

    from tuner.search.ax_searcher import AxSearcher

    searcher = AxSearcher(SPACE, seed=seed, method="bo", avoid_failures=strategy == "bo")
    set_stderr_log_level(logging.ERROR)
    return searcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--strategies", default="bo,bo-plain,tpe,random")
    args = parser.parse_args()
    configs = all_configs()
    share = sum(map(fails, configs)) / len(configs)
    print(f"space: {len(configs)} configurations, {share:.1%} fail; {args.trials} trials x {args.seeds} seeds")
    print(f"{'strategy':<10}{'failed %':>20}{'distinct / 100':>20}{'failed re-proposed':>22}{'time':>8}")
    for strategy in args.strategies.split(","):
        start = time.perf_counter()
        runs = [run(strategy, seed, args.trials) for seed in range(args.seeds)]
        cells = ""
        for field, width in (("failed", 20), ("distinct", 20), ("failed_repeats", 22)):
            values = [r[field] for r in runs]
            cells += f"{f'{statistics.median(values):.0f} [{min(values):.0f}-{max(values):.0f}]':>{width}}"
        print(f"{strategy:<10}{cells}{time.perf_counter() - start:>7.0f}s", flush=True)
    print("(median [min-max] over seeds; 'failed re-proposed': trials repeating a configuration that already failed)")


if __name__ == "__main__":
    main()
