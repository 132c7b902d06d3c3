"""The study's one energy model: what a configuration will likely cost, and at most.

Why it exists: the budget gate used to admit a trial when the *median* finished trial fit
in what was left. Energies across a search space span orders of magnitude (epochs x batch
size x power limit), so the configuration actually proposed could cost far more than the
median: on replayed Zeus traces 6.63 kWh were left, the median trial was 1.64 kWh, and the
trial admitted cost 12.45 kWh. The gate now asks this model about the proposal itself, at
its upper band, whatever the searcher (grid, random, Sobol or BO): one model, fitted on
the study's completed trials (the trials table), used by every searcher and by the price
tag's full-grid estimate.

The model is a Gaussian process on ``log(kWh)`` over the encoded parameters
(:class:`~tuner.space.SpaceEncoder` features: ranges on their search scale in
[0, 1], ordered choices by index, unordered ones one-hot), plus ``log(value)`` of every
linear range above zero, since compute usually follows a power law of epochs, steps or
width. Its kernel is a linear trend with a fixed prior on its slopes (Bayesian linear
regression on the features), plus a constant times an ARD Matern-5/2 for what is not
linear, plus white noise, on log kWh centred on the trials' mean. The predictive variance
includes the noise, so the upper band is a prediction bound for one trial's energy, not a
confidence bound for its mean, and its width is calibrated on the model's own
leave-one-out errors (:meth:`EnergyModel._calibrated_band`). It is a log model because
energy is a product of factors, and because a log model's errors are relative, as a
budget's are.

Away from the trials it was fitted on, the trend is extrapolated and the Matern part falls
back to its prior, so the band widens with the distance instead of pricing the unexplored
dear end of a space like its middle.

Measured on the Zeus traces (all 24 workload x GPU pairs, 2 seeds, fitted on trials 3 to
20 of a random search, the next trial predicted each time): the 90 % upper band held for
91 % of next trials, at a median 1.09x the true energy; 85 % when the first half of the
trials came from the cheap corner of the space (``benchmarks/budget_hold.py --calibration``,
docs/search.md).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tuner.config import FloatRange, IntRange
from tuner.search.base import SearchParam

LEVEL = 0.9
"""The upper band: a one-sided 90 % prediction bound on one trial's energy."""

MIN_TRIALS = 3
"""Completed trials the model needs before it predicts anything (fitted on two, a nominal
90 % band held for half of the next trials on the Zeus traces)."""

MAX_LENGTH_SCALE = 3.0
"""Upper bound of the kernel's length scales, on features that span [0, 1]. Left free (up to
20), a fit on few trials made the process nearly linear and far too sure of itself: the
next trial's energy lay 4 to 9 predictive standard deviations above the mean."""

TREND_VARIANCE = 4.0
"""Prior variance of the linear trend's slopes, in (log kWh)^2 per unit feature: a parameter
moved across its range changes energy by a factor of e^2 (7x) at one standard deviation.
Without a trend the process reverts to the mean away from the trials, so the dear end of a
space that the search has not reached (most epochs, largest model) is priced like the
middle: the full-grid estimate was 25 % low when the trials sat in the cheap corner. With
it, trends are extrapolated, with a variance that grows with the distance."""

MIN_NOISE = 1e-3
"""Lower bound of the white noise, in (log kWh)^2: about 3 % of a trial's energy, the
least run-to-run spread a measured trial has."""

REOPTIMISE_EVERY = 3
"""Trials between two optimisations of the kernel's hyperparameters. In between, the GP
keeps the last ones and is only conditioned on the new trials (and its band recalibrated
on its leave-one-out errors), which costs milliseconds: optimised after every trial, the
model cost more of a study of short trials than the BO step did (docs/search.md). Against
trials as cheap as an optimisation, the study spaces them further
(:attr:`EnergyModel.reoptimise_every`, :func:`tuner.search.step_policy.upkeep_every`)."""


@dataclass(frozen=True)
class EnergyPrediction:
    """One configuration's predicted energy: the median and the upper band, in kWh."""

    kwh: float
    upper_kwh: float
    level: float
    trials: int  # completed trials the model was fitted on

    def describe(self) -> str:
        return f"predicted {self.kwh:.3g} kWh [{self.level:.0%} upper {self.upper_kwh:.3g}]"


class EnergyModel:
    """A GP on log kWh over a search space; see the module docstring for why and how.

    >>> from tuner.config import IntRange
    >>> model = EnergyModel({"epochs": IntRange(type="int", low=1, high=100)})
    >>> model.fit([{"epochs": e} for e in (1, 10, 50)], [0.01, 0.1, 0.5])
    >>> round(model.predict({"epochs": 10}).kwh, 2)
    0.1
    """

    def __init__(self, space: Mapping[str, SearchParam], level: float = LEVEL,
                 min_trials: int = MIN_TRIALS) -> None:
        from tuner.space import SpaceEncoder

        self.space = dict(space)
        self.encoder = SpaceEncoder(self.space)
        self.level = level
        self.min_trials = min_trials
        self.trials = 0
        self._gp: Any = None
        self._key: tuple = ()
        self._theta: np.ndarray | None = None  # the last fit's kernel hyperparameters (warm start)
        self._optimised_at = 0  # trials when the hyperparameters were last optimised
        self.reoptimise_every = REOPTIMISE_EVERY  # the study may space optimisations further (BudgetGate)
        self.optimise_cpu_s: float | None = None  # CPU of the last fit that optimised the hyperparameters
        self._band = 0.0  # the upper band, in predictive standard deviations above the mean
        self._centre = 0.0  # the mean log kWh the GP is fitted around
        self.loo_r2 = math.nan  # leave-one-out R^2 of log kWh: how well the model predicts a trial unseen

    @property
    def fitted(self) -> bool:
        return self._gp is not None

    def features(self, params: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Model features of each configuration (see the module docstring)."""
        frame = pd.DataFrame([{name: p.get(name) for name in self.encoder.names} for p in params])
        design = self.encoder.design(frame)
        columns = [self.encoder.features(design)]
        for i, name in enumerate(self.encoder.names):
            param = self.space[name]
            if isinstance(param, (FloatRange, IntRange)) and not param.log and param.low > 0:
                value = param.low + design[:, i] * (param.high - param.low)
                span = math.log(param.high / param.low) or 1.0
                columns.append(((np.log(value) - math.log(param.low)) / span)[:, None])
        return np.hstack(columns)

    def fit(self, params: Sequence[Mapping[str, Any]], energies: Sequence[float]) -> None:
        """Fit on completed trials: their parameters and their energy totals (kWh > 0).

        Refits only when the trials changed. The hyperparameters are optimised again only
        every :data:`REOPTIMISE_EVERY` trials, from the last fit's (plus one random restart);
        in between the GP keeps them and takes in the new trials.
        """
        rows = [(p, float(e)) for p, e in zip(params, energies, strict=True) if math.isfinite(e) and e > 0]
        key = tuple((tuple(sorted((k, repr(v)) for k, v in p.items() if k in self.space)), e) for p, e in rows)
        if key == self._key:
            return
        self._key = key
        self.trials = len(rows)
        if len(rows) < self.min_trials:
            self._gp = None
            return
        x = self.features([p for p, _ in rows])
        y = np.log([e for _, e in rows])
        self._gp = self._fit(x, y)
        self._band = self._calibrated_band(self._gp)

    def _fit(self, x: np.ndarray, y: np.ndarray) -> Any:
        """The GP on centred log kWh (see :data:`MAX_LENGTH_SCALE` and :data:`MIN_NOISE` for its bounds)."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, DotProduct, Matern, WhiteKernel

        # a linear trend with a fixed prior (Bayesian linear regression on the features),
        # plus an ARD Matern for what is not linear, plus noise
        trend = ConstantKernel(TREND_VARIANCE, "fixed") * DotProduct(sigma_0=1.0, sigma_0_bounds="fixed")
        kernel = (trend + ConstantKernel(1.0, (1e-2, 1e2)) * Matern(np.ones(x.shape[1]), (0.05, MAX_LENGTH_SCALE), nu=2.5)
                  + WhiteKernel(1e-2, (MIN_NOISE, 1.0)))
        warm = self._theta is not None and len(self._theta) == len(kernel.theta)
        if warm:
            kernel = kernel.clone_with_theta(self._theta)
        reuse = warm and len(y) < self._optimised_at + max(REOPTIMISE_EVERY, self.reoptimise_every)
        # centred, not scaled: the kernel's bounds are in log kWh, whatever the study's scale
        gp = GaussianProcessRegressor(kernel, normalize_y=False, random_state=0,
                                      **({"optimizer": None} if reuse else {"n_restarts_optimizer": 1}))
        self._centre = float(np.mean(y))
        start = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(x, y - self._centre)
        if not reuse:
            self._optimised_at = len(y)
            self.optimise_cpu_s = time.process_time() - start
        self._theta = gp.kernel_.theta
        return gp

    def _calibrated_band(self, gp: Any) -> float:
        """How many predictive standard deviations the upper band lies above the mean.

        A GP's own band is too narrow where its hyperparameters are fitted on the same few
        points (on the Zeus traces, a nominal 90 % band held for 80 % of next trials). So
        the band is set from the model's own leave-one-out errors, in standard deviations
        (closed form for a GP): their conformal quantile, the ceil((n + 1) x level)-th
        smallest, or the largest while there are too few for it; and never below Student's
        t quantile with n - 1 degrees of freedom, as for a spread estimated from n trials.
        """
        from scipy.linalg import cho_solve
        from scipy.stats import t as student_t

        inverse = cho_solve((gp.L_, True), np.eye(len(gp.alpha_)))
        diagonal = np.diag(inverse)
        residuals = gp.alpha_.ravel() / diagonal  # y_i - its leave-one-out mean
        y = gp.y_train_.ravel()
        spread = float(np.sum((y - y.mean()) ** 2))
        self.loo_r2 = 1.0 - float(np.sum(residuals**2)) / spread if spread > 0 else math.nan
        scores = np.sort(residuals * np.sqrt(diagonal))  # in leave-one-out standard deviations
        rank = math.ceil((len(scores) + 1) * self.level)
        conformal = scores[min(rank, len(scores)) - 1]
        floor = float(student_t.ppf(self.level, df=max(len(scores) - 1, 1)))
        return max(floor, float(conformal))

    def predict(self, params: Mapping[str, Any]) -> EnergyPrediction | None:
        """The configuration's energy, or ``None`` before :data:`MIN_TRIALS` trials completed."""
        if self._gp is None:
            return None
        mean, std = self._gp.predict(self.features([params]), return_std=True)
        return self._prediction(float(mean[0]) + self._centre, float(std[0]))

    def predict_upper(self, params: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The upper band (kWh) of each configuration, in one call; ``inf`` before the model fits."""
        if self._gp is None:
            return np.full(len(params), math.inf)
        mean, std = self._gp.predict(self.features(params), return_std=True)
        return np.exp(mean + self._centre + self._band * std)

    def _prediction(self, mean: float, std: float) -> EnergyPrediction:
        return EnergyPrediction(math.exp(mean), math.exp(mean + self._band * std), self.level, self.trials)

    def sample_log_kwh(self, params: Sequence[Mapping[str, Any]], draws: int, seed: int = 0) -> np.ndarray:
        """``draws`` x points joint draws of log kWh from the calibrated predictive distribution.

        The spread is widened as the upper band is (:meth:`_calibrated_band`), by the
        band over the Gaussian quantile, so that a total over many configurations (the
        price tag's full grid) is as honest as one trial's band.
        """
        if self._gp is None:
            raise ValueError(f"the energy model needs {self.min_trials} completed trials, has {self.trials}")
        from scipy.stats import norm

        mean, cov = self._gp.predict(self.features(params), return_cov=True)
        cov = (cov + cov.T) / 2 + 1e-9 * np.eye(len(mean))
        widen = self._band / float(norm.ppf(self.level))
        deviations = np.random.default_rng(seed).multivariate_normal(np.zeros(len(mean)), cov, size=draws,
                                                                     method="cholesky")
        return mean + self._centre + widen * deviations


__all__ = ["LEVEL", "MIN_TRIALS", "EnergyModel", "EnergyPrediction"]
