"""How much each hyperparameter moves the metric and the energy: Sobol indices with intervals.

One method for every study and for every way a report is made (at the end of a live
study, by ``greentune report DIR`` or from the MLflow run): everything is computed from
the trials table, with fixed seeds, so a rebuilt report shows the same numbers as the
live one. The searcher's own model (Ax's BoTorch GP for ``bo``) is not read: it exists
only in a live study, and two models gave two answers.

Steps, per objective (the metric, and ``energy_kwh``):

1. **Enough data.** The completed trials with both objectives must number at least
   parameters + 3 (:func:`minimum_trials`); fewer, and no model is fitted at all.
2. **A surrogate.** A scikit-learn Gaussian process (Matern 5/2 with one length scale per
   feature, plus white noise; ranges on their search scale, choices one-hot) fitted on
   those trials. Energy is modelled as ``log(kWh)``.
3. **A fit check (the gate).** ``CV_FOLDS``-fold cross-validated R^2 of that model, the
   kernel refitted in every fold (pooled out-of-fold predictions: ``1 - SSE / SST``;
   for energy, of ``log(kWh)``). Below ``R2_THRESHOLD`` the model predicts less than half
   the variance of trials it did not see; its indices would describe the model's
   guesses, not the objective, so that objective gets an explicit "model does not fit"
   panel and no bars. An objective that is constant over the trials gets no bars either.
4. **Indices with intervals.** ``POSTERIOR_PATHS`` functions drawn from the GP's posterior
   (pathwise sampling with random Fourier features: Wilson et al. 2020), each evaluated
   on ``BASE_ROWS`` x (parameters + 2) Monte-Carlo points (Saltelli's A, B and A_B^i
   matrices, parameters uniform over the search space: ranges on their search scale,
   choices each level alike) and each with its own bootstrap resample of the base rows,
   so that the spread holds both the model's uncertainty and the Monte-Carlo error (Le
   Gratiet, Cannamela & Iooss 2014). Per path: first order by Saltelli (2010), total by
   Jansen (1999), for energy on ``kWh`` itself. First order is clipped to [0, 1], total
   to [first order, 1]: both are shares of variance, and a parameter's total effect
   holds its first-order one. The table gives the median over paths and the 2.5-97.5 %
   interval; as first <= total holds on every path, it holds for the medians and for
   each interval bound too.
5. **Direction.** Per path, the mean change of the objective when a parameter moves from
   its low to its high end (the others drawn at random): ``+`` or ``-`` when at least
   ``DIRECTION_SHARE`` of the paths agree, else ``unclear``; unordered choices have none.

References: Saltelli et al. (2010), Comput. Phys. Commun. 181:259; Jansen (1999),
Comput. Phys. Commun. 117:35; Le Gratiet, Cannamela & Iooss (2014), SIAM/ASA JUQ 2:336;
Wilson et al. (2020), ICML, "Efficiently sampling functions from Gaussian process
posteriors".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tuner.config import ENERGY_METRIC
from tuner.space import SpaceEncoder

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tuner.result import TuneResult

R2_THRESHOLD = 0.5
CV_FOLDS = 5
BASE_ROWS = 512
POSTERIOR_PATHS = 200
FOURIER_FEATURES = 1024
DIRECTION_ROWS = 128
DIRECTION_SHARE = 0.95
INTERVAL = (2.5, 97.5)
SEED = 0

COLUMNS = ["objective", "parameter", "first_order", "first_order_low", "first_order_high",
           "total_order", "total_order_low", "total_order_high", "direction"]
CHECK_COLUMNS = ["n_trials", "cv_r2", "r2_threshold", "fit"]


def minimum_trials(n_parameters: int) -> int:
    """Completed trials needed before any surrogate is fitted: parameters + 3.

    A GP with one length scale per parameter, a signal and a noise level has parameters + 2
    hyperparameters; with fewer trials than that plus one it can explain anything.
    """
    return n_parameters + 3


@dataclass(frozen=True)
class FitCheck:
    """The gate for one objective: was a model fitted, and did it pass its own check?"""

    objective: str
    n_trials: int
    cv_r2: float | None
    passed: bool
    note: str = ""  # why there are no bars; empty when passed

    @property
    def label(self) -> str:
        """``passed`` or the reason, as ``sensitivity.csv``'s ``fit`` column says it."""
        return "passed" if self.passed else self.note


@dataclass
class Sensitivity:
    """Sobol indices per (objective, parameter) for the objectives whose model passed.

    ``table`` has :data:`COLUMNS`: medians and 95 % intervals of the first-order and total
    indices (shares of the objective's variance, 0..1) and the direction of the effect.
    ``checks`` holds every objective's gate; ``note`` says why nothing was computed at all
    (no tunable parameter, too few trials).
    """

    table: pd.DataFrame
    checks: dict[str, FitCheck]
    method: str
    note: str = ""
    parameters: list[str] = field(default_factory=list)

    def ranking(self, objective: str) -> list[str]:
        """Parameters of one objective, largest median total index first (empty if not drawn)."""
        rows = self.table[self.table["objective"] == objective]
        return rows.sort_values("total_order", ascending=False, kind="stable")["parameter"].tolist()

    def frame(self) -> pd.DataFrame:
        """``sensitivity.csv``: every (objective, parameter), the gate beside the indices.

        An objective whose model was not fitted or failed its check keeps its rows, indices
        empty, so the file says why there are no numbers.
        """
        rows = []
        indexed = self.table.set_index(["objective", "parameter"]) if not self.table.empty else None
        for objective, check in self.checks.items():
            for parameter in self.parameters or [""]:
                row: dict[str, Any] = {"objective": objective, "parameter": parameter}
                if indexed is not None and (objective, parameter) in indexed.index:
                    row.update(indexed.loc[(objective, parameter)].to_dict())
                row.update(n_trials=check.n_trials, cv_r2=check.cv_r2, r2_threshold=R2_THRESHOLD,
                           fit=check.label, method=self.method)
                rows.append(row)
        return pd.DataFrame(rows, columns=[*COLUMNS, *CHECK_COLUMNS, "method"])


def sensitivity(result: TuneResult) -> Sensitivity:
    """Sobol indices of the study's metric and energy, from its trials table (module doc)."""
    from threadpoolctl import threadpool_limits

    # Dozens of GP fits on small matrices: one BLAS thread is 5x faster than several
    # contending for a busy machine (measured: 2.0 s against 10.4 s, 36 trials, 2 cores).
    with threadpool_limits(1):
        return _sensitivity(result)


def _sensitivity(result: TuneResult) -> Sensitivity:
    if result.config is None:
        raise ValueError("sensitivity needs the study's search space: TuneResult.config is None")
    space = result.config.tunable
    objectives = [result.metric, ENERGY_METRIC]
    done = result.completed.dropna(subset=objectives)
    n = len(done)
    if not space:
        note = "the search space has no tunable parameter"
        return Sensitivity(_empty(), {o: FitCheck(o, n, None, False, note) for o in objectives}, "none", note)
    encoder = SpaceEncoder(space)
    needed = minimum_trials(len(encoder.names))
    if n < needed:
        note = (f"not enough data: {n} completed trials, sensitivity needs parameters + 3 = "
                f"{needed} ({len(encoder.names)} tunable parameters)")
        return Sensitivity(_empty(), {o: FitCheck(o, n, None, False, note) for o in objectives}, "none", note,
                           list(encoder.names))
    x = encoder.features(encoder.design(done))
    design = _monte_carlo_design(encoder)
    rows: list[dict[str, Any]] = []
    checks: dict[str, FitCheck] = {}
    for objective in objectives:
        y = done[objective].to_numpy(float)
        log = objective == ENERGY_METRIC and bool((y > 0).all())
        target = np.log(y) if log else y
        if np.ptp(target) <= 1e-12 * max(1.0, float(np.abs(target).max())):
            checks[objective] = FitCheck(objective, n, None, False,
                                         f"{objective} is the same in all {n} completed trials: nothing to attribute")
            continue
        r2 = cross_validated_r2(x, target)
        if not r2 >= R2_THRESHOLD:
            checks[objective] = FitCheck(
                objective, n, r2, False,
                f"model does not fit: {CV_FOLDS}-fold CV R^2 = {r2:.2f} < {R2_THRESHOLD:g}"
                f"{' (of log kWh)' if log else ''}; no indices drawn")
            continue
        checks[objective] = FitCheck(objective, n, r2, True)
        paths = _posterior_paths(_fit_gp(x, target), encoder, design, log)
        rows += _indices(objective, encoder, design, paths)
    fits = ", ".join(f"{c.objective} {'n/a' if c.cv_r2 is None else f'{c.cv_r2:.2f}'}" for c in checks.values())
    method = (f"Sobol indices (first order: Saltelli 2010; total: Jansen 1999) of a scikit-learn Gaussian process "
              f"(Matern 5/2, one length scale per feature, white noise; energy as log kWh) fitted on {n} completed "
              f"trials; median and 95 % interval over {POSTERIOR_PATHS} posterior sample functions, each on a "
              f"bootstrap of {BASE_ROWS} Monte-Carlo base rows; drawn only where the {CV_FOLDS}-fold "
              f"cross-validated R^2 is at least {R2_THRESHOLD:g} (R^2: {fits}); direction = sign of the mean "
              f"effect low -> high in at least {DIRECTION_SHARE:.0%} of the sample functions")
    return Sensitivity(pd.DataFrame(rows, columns=COLUMNS), checks, method, "", list(encoder.names))


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=COLUMNS)


# ------------------------------------------------------------------ the surrogate and its check


def _fit_gp(x: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
        length_scale=np.ones(x.shape[1]), length_scale_bounds=(1e-2, 1e3), nu=2.5
    ) + WhiteKernel(1e-2, (1e-8, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a length scale at its bound = irrelevant input
        return GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=1,
                                        random_state=SEED).fit(x, y)


def cross_validated_r2(x: np.ndarray, y: np.ndarray, folds: int = CV_FOLDS) -> float:
    """Out-of-fold R^2 of the surrogate, its kernel refitted on each training fold.

    Pooled over folds (``1 - SSE / SST`` of all out-of-fold predictions), not the mean of
    per-fold scores: a fold of two trials with nearly equal values would otherwise give an
    R^2 of minus several hundred on its own. Refitting per fold keeps the held-out
    trials out of the kernel's hyperparameters too.
    """
    from sklearn.model_selection import KFold

    y = np.asarray(y, float)
    predicted = np.empty_like(y)
    for train, test in KFold(min(folds, len(y)), shuffle=True, random_state=SEED).split(x):
        predicted[test] = _fit_gp(x[train], y[train]).predict(x[test])
    total = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - predicted) ** 2)) / total if total > 0 else float("nan")


# ------------------------------------------------------------------ Monte Carlo on posterior paths


@dataclass(frozen=True)
class _Design:
    """Saltelli's matrices in design coordinates, and the low/high pairs for directions."""

    a: np.ndarray  # BASE_ROWS x d
    b: np.ndarray
    ab: np.ndarray  # d x BASE_ROWS x d: A with column i from B
    low: np.ndarray  # d x DIRECTION_ROWS x d: random rows with parameter i at its low end
    high: np.ndarray
    rows: np.ndarray  # POSTERIOR_PATHS x BASE_ROWS bootstrap indices, one resample per path

    def points(self) -> np.ndarray:
        d = self.a.shape[1]
        return np.vstack([self.a, self.b, self.ab.reshape(-1, d), self.low.reshape(-1, d), self.high.reshape(-1, d)])


def _monte_carlo_design(encoder: SpaceEncoder) -> _Design:
    rng = np.random.default_rng(SEED)
    lower, upper = encoder.bounds
    d = len(lower)

    def draw(count: int) -> np.ndarray:
        sample = rng.uniform(0.0, 1.0, size=(count, d))
        points = lower + sample * (upper - lower)
        for i in encoder.discrete:  # each level of a choice equally likely
            points[:, i] = np.minimum(np.floor(sample[:, i] * (upper[i] + 1)), upper[i])
        return points

    a, b = draw(BASE_ROWS), draw(BASE_ROWS)
    ab = np.repeat(a[None], d, axis=0)
    for i in range(d):
        ab[i, :, i] = b[:, i]
    base = draw(DIRECTION_ROWS)
    low, high = np.repeat(base[None], d, axis=0), np.repeat(base[None], d, axis=0)
    for i in range(d):
        low[i, :, i], high[i, :, i] = lower[i], upper[i]
    rows = rng.integers(BASE_ROWS, size=(POSTERIOR_PATHS, BASE_ROWS))
    return _Design(a, b, ab, low, high, rows)


def _posterior_paths(model: Any, encoder: SpaceEncoder, design: _Design, log: bool) -> np.ndarray:
    """``POSTERIOR_PATHS`` functions from the GP posterior at every design point (points x paths).

    Pathwise conditioning: a prior function from random Fourier features of the fitted
    Matern kernel, moved onto the data by the exact GP update,
    ``f(x) = g(x) + k(x, X) (K + s^2 I)^-1 (y - g(X) - e)`` with ``e`` the noise. The
    white-noise part of the kernel is left out of ``g``: these are draws of the mean
    response, which is what the indices describe.
    """
    from scipy.linalg import cho_solve

    kernel = model.kernel_
    signal = float(kernel.k1.k1.constant_value)
    matern = kernel.k1.k2
    noise = float(kernel.k2.noise_level)
    scales = np.broadcast_to(np.asarray(matern.length_scale, float), (model.X_train_.shape[1],))
    rng = np.random.default_rng(SEED + 1)
    nu = matern.nu
    # The spectral density of a Matern-nu kernel is a multivariate Student t with 2 nu
    # degrees of freedom, scaled by the inverse length scales.
    normal = rng.standard_normal((FOURIER_FEATURES, len(scales)))
    chi2 = rng.chisquare(2 * nu, FOURIER_FEATURES)
    frequencies = normal / scales * np.sqrt(2 * nu / chi2)[:, None]
    phases = rng.uniform(0.0, 2 * np.pi, FOURIER_FEATURES)
    weights = rng.standard_normal((FOURIER_FEATURES, POSTERIOR_PATHS))
    amplitude = np.sqrt(2.0 * signal / FOURIER_FEATURES)

    def prior(features: np.ndarray) -> np.ndarray:
        return amplitude * np.cos(features @ frequencies.T + phases) @ weights

    train = model.X_train_
    y_train = model.y_train_  # normalised by the model
    errors = rng.standard_normal((len(train), POSTERIOR_PATHS)) * np.sqrt(noise)
    update = cho_solve((model.L_, True), y_train[:, None] - prior(train) - errors)
    points = encoder.features(design.points())
    latent = kernel.k1(points, train)
    paths = prior(points) + latent @ update
    paths = paths * model._y_train_std + model._y_train_mean  # noqa: SLF001 - sklearn keeps no public copy
    return np.exp(paths) if log else paths


def _indices(objective: str, encoder: SpaceEncoder, design: _Design, paths: np.ndarray) -> list[dict[str, Any]]:
    n, d, m = BASE_ROWS, len(encoder.names), DIRECTION_ROWS
    f_a, f_b = paths[:n], paths[n:2 * n]
    f_ab = paths[2 * n:2 * n + d * n].reshape(d, n, -1)
    f_low = paths[2 * n + d * n:2 * n + d * n + d * m].reshape(d, m, -1)
    f_high = paths[2 * n + d * n + d * m:].reshape(d, m, -1)
    # One bootstrap resample of the base rows per path: Monte-Carlo error and model
    # uncertainty in one spread.
    columns = np.arange(paths.shape[1])
    rows = design.rows.T  # BASE_ROWS x paths
    f_a, f_b, f_ab = f_a[rows, columns], f_b[rows, columns], f_ab[:, rows, columns]
    # Saltelli's first-order estimator's error grows with the output's mean: centre each
    # path first (indices do not change under a shift).
    pooled = np.concatenate([f_a, f_b])
    center = pooled.mean(axis=0)
    f_a, f_b, f_ab = f_a - center, f_b - center, f_ab - center
    variance = np.var(pooled, axis=0)
    flat = variance <= 1e-24 * np.maximum(1.0, center**2)
    variance = np.where(flat, 1.0, variance)
    first = np.mean(f_b[None] * (f_ab - f_a[None]), axis=1) / variance  # d x paths
    total = 0.5 * np.mean((f_a[None] - f_ab) ** 2, axis=1) / variance
    first = np.where(flat, 0.0, np.clip(first, 0.0, 1.0))
    total = np.where(flat, 0.0, np.clip(np.maximum(total, first), 0.0, 1.0))
    effect = np.mean(f_high - f_low, axis=1)  # d x paths
    out = []
    for i, name in enumerate(encoder.names):
        first_low, first_mid, first_high = np.percentile(first[i], [INTERVAL[0], 50, INTERVAL[1]])
        total_low, total_mid, total_high = np.percentile(total[i], [INTERVAL[0], 50, INTERVAL[1]])
        if encoder.is_unordered(name):
            direction = "categorical"
        else:
            share = float(np.mean(effect[i] > 0))
            direction = "+" if share >= DIRECTION_SHARE else "-" if share <= 1 - DIRECTION_SHARE else "unclear"
        out.append({"objective": objective, "parameter": name,
                    "first_order": first_mid, "first_order_low": first_low, "first_order_high": first_high,
                    "total_order": total_mid, "total_order_low": total_low, "total_order_high": total_high,
                    "direction": direction})
    return out


# ------------------------------------------------------------------ outputs

_COLORS = {"+": "#2ca02c", "-": "#d62728", "categorical": "#7f7f7f", "unclear": "#bcbd22"}


def sensitivity_figure(found: Sensitivity, metric: str) -> Figure:
    """One panel per objective: total index (wide bar) with first order inside it, 95 %
    intervals as whiskers; an objective without a model that passed its check gets a
    panel saying why, never bars."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 4.4), dpi=110)
    axes = fig.subplots(1, 2, sharey=False)
    drawn = False
    for ax, objective in zip(axes, (metric, ENERGY_METRIC), strict=True):
        check = found.checks.get(objective)
        rows = found.table[found.table["objective"] == objective]
        if check is None or not check.passed or rows.empty:
            reason = check.note if check is not None else (found.note or "not computed")
            ax.text(0.5, 0.5, _wrap(reason, 48), ha="center", va="center", transform=ax.transAxes, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"sensitivity of {objective}: no indices")
            continue
        drawn = True
        rows = rows.sort_values("total_order", kind="stable")
        y = np.arange(len(rows))
        colors = [_COLORS[d] for d in rows["direction"]]
        total_err = [rows["total_order"] - rows["total_order_low"], rows["total_order_high"] - rows["total_order"]]
        first_err = [rows["first_order"] - rows["first_order_low"], rows["first_order_high"] - rows["first_order"]]
        ax.barh(y, rows["total_order"], color=colors, alpha=0.35, xerr=total_err,
                error_kw={"ecolor": "#555555", "capsize": 3, "lw": 0.8})
        ax.barh(y, rows["first_order"], height=0.4, color=colors, xerr=first_err,
                error_kw={"ecolor": "black", "capsize": 2, "lw": 0.8})
        ax.set_yticks(y, rows["parameter"])
        ax.set_xlim(0, 1.02)
        ax.set_xlabel("Sobol index (share of variance), 95 % interval")
        ax.set_title(f"sensitivity of {objective} (CV R^2 = {check.cv_r2:.2f})")
    if drawn:
        fig.legend(handles=_legend_handles(), loc="lower center", ncol=6, fontsize=7, frameon=False)
    fig.suptitle(_wrap(found.method, 160) if not found.note else "hyperparameter sensitivity: no model fitted",
                 fontsize=6.5 if not found.note else 10)
    fig.tight_layout(rect=(0, 0.07 if drawn else 0, 1, 0.9))
    return fig


def _legend_handles() -> list[Any]:
    from matplotlib.patches import Patch

    return [Patch(color="#555555", alpha=0.35, label="total (wide bar)"),
            Patch(color="#555555", label="first order (narrow bar)"),
            Patch(color=_COLORS["+"], label="raises it"), Patch(color=_COLORS["-"], label="lowers it"),
            Patch(color=_COLORS["unclear"], label="no clear direction"),
            Patch(color=_COLORS["categorical"], label="unordered choice")]


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))
