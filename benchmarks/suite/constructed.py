"""Constructed problems: a seeded generator of tuning problems whose answer is known.

Each problem is a training-run stand-in with an accuracy and a kWh written in numpy, so
that the whole space, or a set of configurations known to hold the true front, is
evaluated at once. Their shapes are those the Zeus traces lack (issue 18):

- ``binary-infeasible``: 10 binary and 3 unordered choices of 3 (27,648 configurations);
  about 20 % fail, and the cheap ones fail more often (a crash costs a tenth of the run);
- ``mixed-12``: 12 float, int and choice parameters (learning rate, momentum, dropout,
  weight decay, width, depth, epochs, batch, optimiser, activation, precision,
  augmentation); wide, deep, large-batch full-precision runs run out of memory (a few %);
- ``noisy``: batch size x power limit x epochs like a Zeus trace, with accuracy noise of
  sd 0.05 (a fifth of the accuracy range);
- ``fixed-cost``: each run pays a fixed 0.5 kWh (start-up, data staging) before it
  trains, so energy varies by less than 3x across the space;
- ``ridge``: accuracy is high only where the learning rate sits within a narrow band
  (0.08 decades) of a line in log batch size: the front is a thin ridge.

``make(name, seed)`` draws the coefficients from ``seed`` (the default, 0, is the suite's).
The true front's hypervolume comes from the whole space where it is finite, else from a
set of candidates that provably holds the front: every combination of the parameters that
move energy (floats on a fine mesh), with those that only move accuracy at their known
optimum, plus 50,000 random configurations as a check (none of them may beat the front:
:func:`front_gap` is zero by construction and tested).
Normalisation uses the same set, feasible configurations only; a point outside its range
is clipped onto the unit square.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.suite.problems import Evaluation, Problem, hypervolume
from tuner.config import Choice, FloatRange, IntRange
from tuner.search.base import SearchParam
from tuner.search.baselines import grid_levels, sample

Arrays = dict[str, np.ndarray]
FAILED_SHARE_OF_RUN = 0.1  # a failed run (out of memory, divergence) stops early: a tenth of its kWh
WATTS = 300.0  # simulated seconds = kWh at this draw
RANDOM_CHECK = 50_000


def _f(low: float, high: float, log: bool = False) -> FloatRange:
    return FloatRange(type="float", low=low, high=high, log=log)


def _i(low: int, high: int, log: bool = False) -> IntRange:
    return IntRange(type="int", low=low, high=high, log=log)


def _c(values: list[Any], ordered: bool = False) -> Choice:
    return Choice(type="choice", values=values, ordered=ordered)


class Constructed(Problem):
    """A problem defined by vectorised functions of the configuration (dicts of numpy arrays).

    ``model(X)`` returns (expected accuracy, kWh, failed) per row; ``candidates()`` a set of
    configurations that holds the true front (the whole space when it is finite).
    """

    def __init__(self, name: str, space: dict[str, SearchParam], model: Callable[[Arrays], tuple],
                 candidates: Callable[[], Arrays], noise_sd: float, grid_resolution: int, seed: int,
                 fidelity: str | None = None) -> None:
        self.name, self.space, self.grid_space = name, space, space
        self.model, self.noise_sd, self.grid_resolution, self.fidelity = model, noise_sd, grid_resolution, fidelity
        rng = np.random.default_rng([seed, 99])
        cands = candidates()
        randoms = _stack([{n: sample(p, rng) for n, p in space.items()} for _ in range(RANDOM_CHECK)], space)
        acc_c, kwh_c, fail_c = model(cands)
        acc_r, kwh_r, fail_r = model(randoms)
        acc = np.concatenate([acc_c[~fail_c], acc_r[~fail_r]])
        log_kwh = np.log10(np.concatenate([kwh_c[~fail_c], kwh_r[~fail_r]]))
        self.acc_range = float(acc.min()), float(acc.max())
        self.log_kwh_range = float(log_kwh.min()), float(log_kwh.max())
        self._front = _pareto(self._normalise(acc_c[~fail_c], np.log10(kwh_c[~fail_c])))
        self.true_hv = hypervolume(self._front)
        self.random_hv = hypervolume(_pareto(self._normalise(acc_r[~fail_r], np.log10(kwh_r[~fail_r]))))
        grid = grid_arrays(space, grid_resolution)
        _, kwh_g, fail_g = model(grid)
        self.grid_kwh = float(np.where(fail_g, FAILED_SHARE_OF_RUN * kwh_g, kwh_g).sum())
        self.failed_share = float(fail_r.mean())
        self.notes = {"grid points": len(kwh_g), "failing": f"{self.failed_share:.0%}",
                      "noise sd": noise_sd, "kWh range": f"{kwh_r.min():.3g}-{kwh_r.max():.3g}"}

    def _normalise(self, acc: np.ndarray, log_kwh: np.ndarray) -> np.ndarray:
        (a0, a1), (e0, e1) = self.acc_range, self.log_kwh_range
        return np.clip(np.stack([(acc - a0) / (a1 - a0), (log_kwh - e0) / (e1 - e0)], axis=1), 0, 1)

    def _one(self, params: dict[str, Any]) -> tuple[float, float, bool]:
        acc, kwh, failed = self.model(_stack([params], self.space))
        return float(acc[0]), float(kwh[0]), bool(failed[0])

    def evaluate(self, params: dict[str, Any], rng: np.random.Generator) -> Evaluation:
        acc, kwh, failed = self._one(params)
        if failed:
            kwh *= FAILED_SHARE_OF_RUN
            return Evaluation(None, kwh, kwh * 3.6e6 / WATTS)
        return Evaluation(acc + float(rng.normal(0, self.noise_sd)), kwh, kwh * 3.6e6 / WATTS)

    def point(self, params: dict[str, Any]) -> tuple[float, float] | None:
        acc, kwh, failed = self._one(params)
        if failed:
            return None
        a, e = self._normalise(np.array([acc]), np.array([math.log10(kwh)]))[0]
        return float(a), float(e)

    def front_gap(self) -> float:
        """How much of the random check's hypervolume lies outside the true front's (0 if it holds)."""
        return max(0.0, self.random_hv - self.true_hv)


def _stack(rows: list[dict[str, Any]], space: dict[str, SearchParam]) -> Arrays:
    return {n: np.array([r[n] for r in rows]) for n in space}


def _pareto(points: np.ndarray) -> list[tuple[float, float]]:
    """The non-dominated (accuracy up, energy down) points, for a fast hypervolume."""
    order = np.lexsort((-points[:, 0], points[:, 1]))
    front, best = [], -1.0
    for a, e in points[order]:
        if a > best:
            front.append((float(a), float(e)))
            best = a
    return front


def grid_arrays(space: dict[str, SearchParam], resolution: int) -> Arrays:
    """Every point of greentune's grid (``GridSearcher``'s levels) as arrays."""
    levels = [grid_levels(p, resolution) for p in space.values()]
    return _product(dict(zip(space, levels, strict=True)))


def _product(levels: dict[str, list[Any]]) -> Arrays:
    index = np.indices([len(v) for v in levels.values()]).reshape(len(levels), -1)
    return {n: np.asarray(v, dtype=object if isinstance(v[0], str) else None)[index[i]]
            for i, (n, v) in enumerate(levels.items())}


def _dense(param: SearchParam, n: int) -> list[Any]:
    """A fine mesh of a numeric parameter (every integer when there are few)."""
    if isinstance(param, IntRange) and param.high - param.low < n:
        return list(range(param.low, param.high + 1))
    return grid_levels(param, n)


# ----------------------------------------------------------------------------- the generators


def binary_infeasible(seed: int = 0) -> Constructed:
    rng = np.random.default_rng([seed, 1])
    bits, choices = [f"b{i}" for i in range(10)], ["c0", "c1", "c2"]
    space: dict[str, SearchParam] = {b: _c([False, True]) for b in bits}
    space |= {c: _c(["x", "y", "z"]) for c in choices}
    cost = rng.uniform(0.05, 0.35, 10)  # decades of kWh a bit adds when on
    gain = cost * rng.uniform(0.0, 1.2, 10) - rng.uniform(0.0, 0.05, 10)  # some bits are not worth it
    c_cost, c_gain = rng.uniform(0, 0.3, (3, 3)), rng.uniform(-0.08, 0.08, (3, 3))
    pair = rng.uniform(-0.05, 0.05, (3, 3))  # c0 x c1 interaction on accuracy
    luck = rng.normal(0, 1, 2**10 * 27)  # a per-configuration term: failures are not all a rule

    def index(X: Arrays) -> tuple[np.ndarray, np.ndarray]:
        b = np.stack([X[n].astype(bool) for n in bits], axis=1)
        c = np.stack([np.searchsorted(["x", "y", "z"], X[n].astype(str)) for n in choices], axis=1)
        return b, c

    centre = -1.0 + cost.sum() / 2 + c_cost.mean(axis=1).sum()  # the space's mean log10 kWh: a constant

    def raw(X: Arrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b, c = index(X)
        log_kwh = -1.0 + b @ cost + sum(c_cost[j, c[:, j]] for j in range(3))
        score = b @ gain + sum(c_gain[j, c[:, j]] for j in range(3)) + pair[c[:, 0], c[:, 1]]
        acc = 0.45 + 0.5 * (1 - np.exp(-1.5 * np.maximum(score + 0.2, 0)))
        number = (b @ (2 ** np.arange(10))) * 27 + c @ np.array([9, 3, 1])
        # infeasibility: cheap configurations, a rule (c0 = x without b3), and luck
        risk = -2.0 * (log_kwh - centre) / 0.5 + 1.5 * ((c[:, 0] == 0) & ~b[:, 3]) + 1.0 * luck[number]
        return acc, 10 ** log_kwh, risk

    everything = _product({n: p.values for n, p in space.items()})
    threshold = float(np.quantile(raw(everything)[2], 0.80))  # a fifth of the space fails

    def model(X: Arrays) -> tuple:
        acc, kwh, risk = raw(X)
        return acc, kwh, risk > threshold

    return Constructed("binary-infeasible", space, model, lambda: everything, noise_sd=0.005,
                       grid_resolution=2, seed=seed)


def mixed_12(seed: int = 0) -> Constructed:
    rng = np.random.default_rng([seed, 2])
    space: dict[str, SearchParam] = {
        "lr": _f(1e-4, 1.0, log=True), "momentum": _f(0.5, 0.99), "dropout": _f(0.0, 0.6),
        "weight_decay": _f(1e-6, 1e-1, log=True), "width": _i(16, 1024, log=True), "depth": _i(1, 12),
        "epochs": _i(1, 64, log=True), "batch": _c([16, 32, 64, 128, 256, 512], ordered=True),
        "optimizer": _c(["sgd", "adam", "adamw"]), "activation": _c(["relu", "gelu", "tanh"]),
        "precision": _c(["fp32", "bf16"]), "augment": _c(["none", "light", "heavy"], ordered=True),
    }
    opt_bonus = dict(zip(["sgd", "adam", "adamw"], rng.uniform(0, 0.02, 3), strict=True))
    act_bonus = {"relu": 0.0, "gelu": float(rng.uniform(0, 0.015)), "tanh": -0.02}
    wd_opt = {"sgd": 5e-4, "adam": 1e-5, "adamw": 1e-2}

    def lr_opt(optimizer: np.ndarray, batch: np.ndarray) -> np.ndarray:
        return np.where(optimizer == "sgd", 0.1, 1e-3) * np.sqrt(batch / 128)

    def dropout_opt(width: np.ndarray) -> np.ndarray:
        return 0.05 + 0.35 * (np.log2(width) - 4) / 6

    def model(X: Arrays) -> tuple:
        opt, batch, width, depth = X["optimizer"].astype(str), X["batch"].astype(float), X["width"], X["depth"]
        cap = np.log2(width) / 10 + depth / 24
        aug = X["augment"].astype(str)
        ceiling = (0.55 + 0.35 * (1 - np.exp(-1.5 * cap)) + np.vectorize(opt_bonus.get)(opt)
                   + np.vectorize(act_bonus.get)(X["activation"].astype(str))
                   - 0.005 * (X["precision"] == "bf16") + np.select([aug == "light", aug == "heavy"], [0.015, 0.03], 0))
        tau = 3 * (1 + cap) * (batch / 64) ** 0.3 * np.select([aug == "light", aug == "heavy"], [1.2, 1.6], 1.0)
        penalty = (0.03 * np.log10(X["lr"] / lr_opt(opt, batch)) ** 2
                   + np.where(opt == "sgd", 1.0 * (X["momentum"] - 0.9) ** 2, 0)
                   + 0.2 * (X["dropout"] - dropout_opt(width)) ** 2
                   + 0.004 * np.log10(X["weight_decay"] / np.vectorize(wd_opt.get)(opt)) ** 2)
        # a badly set run still beats chance (0.1)
        acc = np.maximum(ceiling * (1 - np.exp(-X["epochs"] / tau)) - penalty, 0.1)
        bf16 = X["precision"] == "bf16"
        kwh = 0.002 * X["epochs"] * (width / 64) * depth / 4 * np.where(bf16, 0.6, 1.0) * (64 / batch) ** 0.3
        memory = width * depth * batch * np.where(bf16, 0.5, 1.0)
        return acc, kwh, memory > 1024 * 8 * 256 * 0.9

    def candidates() -> Arrays:
        levels = {n: _dense(p, 30) if n in ("width", "epochs") else None for n, p in space.items()}
        levels |= {"depth": list(range(1, 13)), "batch": space["batch"].values, "precision": ["fp32", "bf16"],
                   "augment": ["none", "light", "heavy"],
                   "optimizer": [max(opt_bonus, key=opt_bonus.get)], "activation": ["gelu"],
                   "lr": [0.0], "momentum": [0.9], "dropout": [0.0], "weight_decay": [0.0]}
        X = _product(levels)
        X["epochs"] = X["epochs"].astype(int)
        X["lr"] = lr_opt(X["optimizer"].astype(str), X["batch"].astype(float))
        X["dropout"] = dropout_opt(X["width"])
        X["weight_decay"] = np.vectorize(wd_opt.get)(X["optimizer"].astype(str))
        return X

    return Constructed("mixed-12", space, model, candidates, noise_sd=0.005, grid_resolution=2, seed=seed,
                       fidelity="epochs")


def noisy(seed: int = 0) -> Constructed:
    rng = np.random.default_rng([seed, 3])
    batches, powers = [32, 64, 128, 256, 512, 1024], [150, 175, 200, 225, 250, 275, 300]
    space: dict[str, SearchParam] = {"batch_size": _c(batches, ordered=True),
                                     "power_limit": _c(powers, ordered=True), "epochs": _i(1, 60, log=True)}
    ceiling = dict(zip(batches, 0.8 - 0.04 * np.abs(np.arange(6) - rng.uniform(1, 4)), strict=True))
    speed = dict(zip(batches, 1 / np.sqrt(np.array(batches) / 32), strict=True))  # hours an epoch at 300 W

    def model(X: Arrays) -> tuple:
        b, p, e = X["batch_size"].astype(int), X["power_limit"].astype(float), X["epochs"]
        tau = 4 * (b / 128) ** 0.4
        acc = 0.3 + (np.vectorize(ceiling.get)(b) - 0.3) * (1 - np.exp(-e / tau))
        hours = e * np.vectorize(speed.get)(b) * 0.02 * (300 / p) ** 0.5  # lower power: slower, less energy
        return acc, hours * p / 1000, np.zeros(len(e), bool)

    return Constructed("noisy", space, model, lambda: _product({n: _dense(p, 100) if not isinstance(p, Choice)
                                                                 else p.values for n, p in space.items()}),
                       noise_sd=0.05, grid_resolution=5, seed=seed, fidelity="epochs")


def fixed_cost(seed: int = 0) -> Constructed:
    rng = np.random.default_rng([seed, 4])
    space: dict[str, SearchParam] = {"lr": _f(1e-4, 1e-1, log=True), "epochs": _i(1, 40),
                                     "model": _c(["small", "medium", "large"], ordered=True),
                                     "batch_size": _c([32, 64, 128, 256], ordered=True)}
    size = {"small": 0, "medium": 1, "large": 2}
    lr_centre = float(rng.uniform(-3, -2))

    def lr_opt(m: np.ndarray, b: np.ndarray) -> np.ndarray:
        return 10 ** (lr_centre - 0.3 * m) * np.sqrt(b / 64)

    def model(X: Arrays) -> tuple:
        m, b, e = np.vectorize(size.get)(X["model"].astype(str)), X["batch_size"].astype(float), X["epochs"]
        ceiling = 0.7 + 0.08 * m - 0.01 * np.log2(b / 32)
        acc = np.maximum(ceiling * (1 - np.exp(-e / (3 + 2 * m))) - 0.05 * np.log10(X["lr"] / lr_opt(m, b)) ** 2, 0.1)
        kwh = 0.5 + e * 0.002 * 3.0 ** m * (64 / b) ** 0.2
        return acc, kwh, np.zeros(len(e), bool)

    def candidates() -> Arrays:
        X = _product({"lr": [0.0], "epochs": list(range(1, 41)), "model": ["small", "medium", "large"],
                      "batch_size": [32, 64, 128, 256]})
        X["lr"] = lr_opt(np.vectorize(size.get)(X["model"].astype(str)), X["batch_size"].astype(float))
        return X

    return Constructed("fixed-cost", space, model, candidates, noise_sd=0.005, grid_resolution=5, seed=seed,
                       fidelity="epochs")


def ridge(seed: int = 0) -> Constructed:
    rng = np.random.default_rng([seed, 5])
    space: dict[str, SearchParam] = {"lr": _f(1e-5, 1.0, log=True), "batch_size": _i(16, 4096, log=True),
                                     "epochs": _i(1, 50), "label_smoothing": _f(0.0, 0.3)}
    slope, intercept = float(rng.uniform(0.6, 1.0)), float(rng.uniform(-4.5, -3.5))
    smoothing = float(rng.uniform(0.05, 0.2))

    def centre(b: np.ndarray) -> np.ndarray:  # the ridge: log10 lr on a line in log2 batch size
        return intercept + slope * (np.log2(b) - 4) / 2

    def model(X: Arrays) -> tuple:
        b, e = X["batch_size"].astype(float), X["epochs"]
        on_ridge = np.exp(-((np.log10(X["lr"]) - centre(b)) / 0.08) ** 2)
        progress = 1 - np.exp(-e / (2 + 4 * np.log2(b) / 12))
        acc = (0.3 + 0.6 * on_ridge * progress * (1 - 0.02 * np.log2(b / 16))
               - 0.1 * (X["label_smoothing"] - smoothing) ** 2)
        kwh = 0.01 * e * (256 / b) ** 0.5
        return acc, kwh, np.zeros(len(e), bool)

    def candidates() -> Arrays:
        X = _product({"lr": [0.0], "batch_size": _dense(space["batch_size"], 400), "epochs": list(range(1, 51)),
                      "label_smoothing": [smoothing]})
        X["lr"] = 10 ** centre(X["batch_size"].astype(float))
        return X

    return Constructed("ridge", space, model, candidates, noise_sd=0.005, grid_resolution=5, seed=seed,
                       fidelity="epochs")


GENERATORS: dict[str, Callable[[int], Constructed]] = {
    "binary-infeasible": binary_infeasible, "mixed-12": mixed_12, "noisy": noisy,
    "fixed-cost": fixed_cost, "ridge": ridge,
}


def make(name: str, seed: int = 0) -> Constructed:
    """The constructed problem ``name`` with coefficients drawn from ``seed``."""
    return GENERATORS[name](seed)


