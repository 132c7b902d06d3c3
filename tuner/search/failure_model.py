"""How likely a configuration is to fail: a small Gaussian-process classifier.

Ax learns nothing from a failed trial (it has no data), so :class:`FailureModel` keeps
its own record of every finished configuration and predicts the failure probability of
a new one. The latent log-odds of failure is a Gaussian process whose kernel is a sum of

- a constant (the base failure rate),
- one term per parameter (main effects: "width 1024 fails more"), and
- one term per *pair* of parameters (interactions: "optimiser sgd *and* no batch norm
  fails", "choice x without bit 3 fails"),

each parameter compared by a one-hot match (unordered choices) or a linear plus squared
exponential similarity of its position in [0, 1] (numbers, ordered choices). The pair
terms are the explicit pairwise-interaction features of a logistic regression, computed
through the kernel so that their count never matters. It is fitted by the Laplace
approximation (Rasmussen & Williams, algorithms 3.1-3.2) on all finished trials, its
three prior variances chosen by the approximate marginal likelihood over a small grid,
and its predictions averaged over the latent uncertainty (probit approximation): little
evidence gives a probability near the base rate, not a confident guess.

numpy only; a fit on 100 trials takes a few milliseconds, a prediction microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from tuner.config import Choice, FloatRange, IntRange
from tuner.search.base import SearchParam

FAILURE_THRESHOLD = 0.35  # a proposal more likely than this to fail is set aside
LENGTHSCALE = 0.3  # of the squared exponential part of a numeric parameter's similarity, in [0, 1] units
# (constant, per parameter, per pair) prior variances of the latent log-odds tried in the fit
PRIOR_GRID: tuple[tuple[float, float, float], ...] = tuple(
    (4.0, main, main * ratio) for main in (0.5, 2.0, 8.0) for ratio in (0.0, 0.1, 0.4)
)
NEWTON_STEPS = 30
NUMERIC_NEIGHBOURS = 4  # draws per numeric parameter among a repair's candidates


class FailureModel:
    """Which configurations failed, and how likely a new one is to fail.

    ``likely_fails`` is true for a configuration that failed before, or whose predicted
    failure probability exceeds ``threshold``. Before any failure, nothing is judged
    likely to fail.
    """

    def __init__(self, space: dict[str, SearchParam], threshold: float | None = None) -> None:
        self.space, self.threshold = space, FAILURE_THRESHOLD if threshold is None else threshold
        self.points: list[np.ndarray] = []
        self.failed: list[bool] = []
        self._failed_keys: set[tuple] = set()
        self._seen_keys: set[tuple] = set()
        params = list(space.values())
        self._categorical = np.array([isinstance(p, Choice) and not p.ordered for p in params], dtype=bool)
        self._fit: _Fit | None = None

    def add(self, params: dict[str, Any], failed: bool) -> None:
        self.points.append(self._coords(params))
        self.failed.append(failed)
        (self._failed_keys if failed else self._seen_keys).add(self._key(params))
        self._fit = None

    def seen(self, params: dict[str, Any]) -> bool:
        key = self._key(params)
        return key in self._failed_keys or key in self._seen_keys

    def failure_probability(self, params: dict[str, Any]) -> float:
        """Predicted probability that ``params`` fails (1/2 with no data)."""
        if not self.points:
            return 0.5
        return float(self.failure_probabilities(self._coords(params)[None, :])[0])

    def failure_probabilities(self, coords: np.ndarray) -> np.ndarray:
        """The same for rows of :meth:`_coords` at once."""
        if self._fit is None:
            self._fit = _fit(np.array(self.points), np.array(self.failed, dtype=float), self._categorical)
        return self._fit.predict(coords)

    def likely_fails(self, params: dict[str, Any]) -> bool:
        if self._key(params) in self._failed_keys:
            return True
        return any(self.failed) and self.failure_probability(params) > self.threshold

    def repair(self, params: dict[str, Any], rng: np.random.Generator,
               taken: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """The least likely to fail of ``params``' neighbours, if it is not likely to fail.

        A neighbour changes one parameter: to each of its other values (a choice) or to
        :data:`NUMERIC_NEIGHBOURS` uniform draws (a number). ``taken`` rules some out (tried,
        pending). A proposal judged likely to fail is thus moved, without another BO step,
        to the nearest configuration the model trusts, e.g. the same with bit 3 on.
        """
        from tuner.search.baselines import sample

        candidates = []
        for name, param in self.space.items():
            if isinstance(param, Choice):
                values = [v for v in param.values if v != params.get(name)]
            else:
                values = [sample(param, rng) for _ in range(NUMERIC_NEIGHBOURS)]
            candidates += [{**params, name: v} for v in values]
        candidates = [c for c in candidates if not self.seen(c) and not taken(c)]
        if not candidates:
            return None
        probabilities = self.failure_probabilities(np.array([self._coords(c) for c in candidates]))
        best = int(np.argmin(probabilities))
        return candidates[best] if probabilities[best] <= self.threshold else None

    def _key(self, params: dict[str, Any]) -> tuple:
        return tuple(_plain(params.get(name)) for name in self.space)

    def _coords(self, params: dict[str, Any]) -> np.ndarray:
        return np.array([_unit(self.space[name], params.get(name)) for name in self.space])


def _similarities(A: np.ndarray, B: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    """Per parameter similarity of each row of ``A`` to each of ``B``: shape (d, len(A), len(B)).

    Unordered: 1 if the same value, else 0 (one-hot features). Numeric: the mean of a
    linear term in the centred position (a trend: wider fails more) and a squared
    exponential (a region: this band of batch sizes fails).
    """
    out = np.empty((A.shape[1], len(A), len(B)))
    for j in range(A.shape[1]):
        a, b = A[:, j][:, None], B[:, j][None, :]
        if categorical[j]:
            out[j] = a == b
        else:
            out[j] = 0.5 * (2 * a - 1) * (2 * b - 1) + 0.5 * np.exp(-(((a - b) / LENGTHSCALE) ** 2))
    return out


def _kernel_parts(A: np.ndarray, B: np.ndarray, categorical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sum over parameters, sum over pairs of distinct parameters) of the similarities."""
    s = _similarities(A, B, categorical)
    main = s.sum(axis=0)
    pairs = 0.5 * (main**2 - (s**2).sum(axis=0))
    return main, pairs


class _Fit:
    def __init__(self, X: np.ndarray, categorical: np.ndarray, prior: tuple[float, float, float],
                 grad: np.ndarray, sqrt_w: np.ndarray, chol: np.ndarray) -> None:
        self.X, self.categorical, self.prior, self.grad = X, categorical, prior, grad
        # L^-1 W^1/2, so that a prediction is matrix products only
        self.whiten = np.linalg.solve(chol, np.diag(sqrt_w))

    def predict(self, coords: np.ndarray) -> np.ndarray:
        c, m, p = self.prior
        main, pairs = _kernel_parts(self.X, coords, self.categorical)
        k = c + m * main + p * pairs  # (n, q)
        mean = self.grad @ k
        v = self.whiten @ k
        prior_var = c + m * _self_similarity(coords, self.categorical).sum(axis=0) \
            + p * _self_pairs(coords, self.categorical)
        var = np.maximum(prior_var - (v**2).sum(axis=0), 0.0)
        return 1.0 / (1.0 + np.exp(-mean / np.sqrt(1.0 + math.pi * var / 8.0)))


def _self_similarity(coords: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    """Each row's similarity to itself, per parameter: shape (d, q)."""
    s = np.where(categorical[:, None], 1.0, 0.5 * (2 * coords.T - 1) ** 2 + 0.5)
    return s


def _self_pairs(coords: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    s = _self_similarity(coords, categorical)
    return 0.5 * (s.sum(axis=0) ** 2 - (s**2).sum(axis=0))


def _fit(X: np.ndarray, y: np.ndarray, categorical: np.ndarray) -> _Fit:
    """The Laplace fit with the prior variances of :data:`PRIOR_GRID` that best explain ``y``."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # small matrices: more threads only contend
        return _fit_all(X, y, categorical)


def _fit_all(X: np.ndarray, y: np.ndarray, categorical: np.ndarray) -> _Fit:
    main, pairs = _kernel_parts(X, X, categorical)
    best: tuple[float, _Fit] | None = None
    for prior in PRIOR_GRID:
        c, m, p = prior
        K = c + m * main + p * pairs
        evidence, fit = _laplace(K, y)
        if best is None or evidence > best[0]:
            grad, sqrt_w, chol = fit
            best = (evidence, _Fit(X, categorical, prior, grad, sqrt_w, chol))
    assert best is not None
    return best[1]


def _laplace(K: np.ndarray, y: np.ndarray) -> tuple[float, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Mode of the posterior latent with a logistic likelihood; the approximate log evidence."""
    n = len(y)
    f = np.zeros(n)
    a = np.zeros(n)
    eye = np.eye(n)
    for _ in range(NEWTON_STEPS):
        pi = 1.0 / (1.0 + np.exp(-f))
        w = pi * (1 - pi)
        sw = np.sqrt(w)
        L = np.linalg.cholesky(eye + sw[:, None] * K * sw[None, :])
        b = w * f + (y - pi)
        c = np.linalg.solve(L.T, np.linalg.solve(L, sw * (K @ b)))
        a_new = b - sw * c
        f_new = K @ a_new
        done = np.max(np.abs(f_new - f)) < 1e-6
        a, f = a_new, f_new
        if done:
            break
    pi = 1.0 / (1.0 + np.exp(-f))
    w = pi * (1 - pi)
    sw = np.sqrt(w)
    L = np.linalg.cholesky(eye + sw[:, None] * K * sw[None, :])
    log_lik = float(np.sum(y * f - np.logaddexp(0.0, f)))
    evidence = -0.5 * float(a @ f) + log_lik - float(np.log(np.diag(L)).sum())
    return evidence, (y - pi, sw, L)


def _unit(param: SearchParam, value: Any) -> float:
    """A value's position in [0, 1]; an unordered choice's index (compared as same or not)."""
    if isinstance(param, Choice):
        index = param.values.index(value) if value in param.values else 0
        if param.ordered:
            return index / max(1, len(param.values) - 1)
        return float(index)
    assert isinstance(param, FloatRange | IntRange)
    if param.high == param.low:
        return 0.0
    if param.log:
        return (math.log(value) - math.log(param.low)) / (math.log(param.high) - math.log(param.low))
    return (value - param.low) / (param.high - param.low)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
