"""How much each hyperparameter moves the metric and the energy: signed Sobol indices.

Two sources, one output table:

- ``bo`` studies: Ax's own surrogate (the BoTorch GP the search used), through
  ``ax.utils.sensitivity.sobol_measures.ax_parameter_sens``; the sign is that of the mean
  gradient over the space.
- everything else (``grid``, ``random``, ``sobol``, or a report rebuilt from disk): a
  scikit-learn Gaussian process fitted on the completed trials, and Ax's Saltelli/Jansen
  Monte-Carlo estimator (``SobolSensitivity``) run on its mean. Energy is modelled in log
  space and the indices computed on ``exp`` of it, so they describe kWh. The sign is the
  direction of the mean effect of moving the parameter from its low to its high end.

The method used, and for the table surrogate its cross-validated R^2, travel with the
result: indices from a surrogate that fits badly say little.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tuner.config import ENERGY_METRIC
from tuner.reporting._space import SpaceEncoder

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tuner.result import TuneResult

MC_SAMPLES = 2048
COLUMNS = ["objective", "parameter", "first_order", "total_order", "direction"]


@dataclass
class Sensitivity:
    """Signed first-order and total Sobol indices per (objective, parameter).

    ``first_order`` and ``total_order`` carry the sign of the effect (``direction`` is
    ``+``, ``-`` or ``categorical``, which has no direction and is reported positive).
    ``table`` is empty and ``note`` says why when there were too few trials.
    """

    table: pd.DataFrame
    method: str
    note: str = ""

    def ranking(self, objective: str) -> list[str]:
        """Parameters of one objective, most influential (largest |total|) first."""
        rows = self.table[self.table["objective"] == objective]
        return rows.reindex(rows["total_order"].abs().sort_values(ascending=False).index)["parameter"].tolist()


def sensitivity(result: TuneResult, searcher: Any = None) -> Sensitivity:
    """Sobol indices for the study's metric and energy, from Ax when it ran BO, else a GP."""
    space = _tunable(result)
    done = result.completed.dropna(subset=[result.metric, ENERGY_METRIC])
    if not space:
        return Sensitivity(pd.DataFrame(columns=COLUMNS), "none", "the search space has no tunable parameter")
    searcher = searcher if searcher is not None else result.searcher
    if getattr(searcher, "method", None) == "bo" and hasattr(searcher, "client"):
        try:
            return _from_ax(searcher.client, [result.metric, ENERGY_METRIC], space)
        except Exception as exc:  # noqa: BLE001 - fall back to the table surrogate, and say so
            fallback = f"Ax surrogate unavailable ({type(exc).__name__}: {exc}); "
            found = _from_table(done, space, result.metric)
            found.method = fallback + found.method
            return found
    return _from_table(done, space, result.metric)


def _tunable(result: TuneResult) -> dict[str, Any]:
    if result.config is None:
        raise ValueError("sensitivity needs the study's search space: TuneResult.config is None")
    return result.config.tunable


# ------------------------------------------------------------------ Ax surrogate


def _from_ax(client: Any, metrics: list[str], space: dict[str, Any]) -> Sensitivity:
    from ax.adapter.torch import TorchAdapter
    from ax.utils.sensitivity.sobol_measures import ax_parameter_sens

    from tuner.search import ax_compat

    adapter = ax_compat.generation_strategy(client).adapter
    how = "the BoTorch model of the study's last BO step"
    if not isinstance(adapter, TorchAdapter):
        # Still in the Sobol phase: fit Ax's default BoTorch model on the same data.
        from ax.adapter.registry import Generators

        experiment = ax_compat.experiment(client)
        adapter = Generators.BOTORCH_MODULAR(experiment=experiment, data=experiment.lookup_data())
        how = "a BoTorch model Ax fitted on the study's data (the search never left its Sobol phase)"
    kwargs = {"num_mc_samples": MC_SAMPLES, "input_qmc": False}
    first = ax_parameter_sens(adapter, metrics=metrics, order="first", signed=True, **kwargs)
    total = ax_parameter_sens(adapter, metrics=metrics, order="total", signed=True, **kwargs)
    digest = adapter.generator.search_space_digest
    encoder = SpaceEncoder(space)
    categorical = {digest.feature_names[i] for i in digest.categorical_features}
    categorical |= {name for name in encoder.names if encoder.is_unordered(name)}
    rows = []
    for metric in metrics:
        merged_first, one_hot = _merge_one_hot(first[metric])
        merged_total, _ = _merge_one_hot(total[metric])
        for name, value in merged_first.items():
            unordered = name in one_hot or name in categorical
            direction = "categorical" if unordered else ("+" if merged_total[name] >= 0 else "-")
            rows.append({"objective": metric, "parameter": name, "first_order": float(value),
                         "total_order": float(merged_total[name]), "direction": direction})
    method = (f"Sobol indices (Ax ax_parameter_sens, {MC_SAMPLES} Monte-Carlo samples) of {how}; "
              "sign = sign of the mean gradient; an unordered choice sums |index| over Ax's one-hot features")
    return Sensitivity(pd.DataFrame(rows, columns=COLUMNS), method)


def _merge_one_hot(values: dict[str, Any]) -> tuple[dict[str, float], set[str]]:
    """Ax one-hot encodes an unordered choice as ``name_OH_PARAM_i``: one row per parameter."""
    merged: dict[str, float] = {}
    one_hot: set[str] = set()
    for feature, value in values.items():
        name, sep, _ = str(feature).partition("_OH_PARAM_")
        if sep:
            one_hot.add(name)
        merged[name] = merged.get(name, 0.0) + (abs(float(value)) if sep else float(value))
    return merged, one_hot


# ------------------------------------------------------------------ table surrogate


def _from_table(done: pd.DataFrame, space: dict[str, Any], metric: str) -> Sensitivity:
    encoder = SpaceEncoder(space)
    minimum = len(encoder.names) + 3
    if len(done) < minimum:
        return Sensitivity(pd.DataFrame(columns=COLUMNS), "none",
                           f"{len(done)} completed trials; the surrogate needs at least {minimum}")
    design = encoder.design(done)
    rows, fits = [], []
    for objective in (metric, ENERGY_METRIC):
        y = done[objective].to_numpy(float)
        log = objective == ENERGY_METRIC and bool((y > 0).all())
        model, r2 = _fit_gp(encoder.features(design), np.log(y) if log else y)

        def predict(codes: np.ndarray, model: Any = model, log: bool = log) -> np.ndarray:
            mean = model.predict(encoder.features(codes))
            return np.exp(mean) if log else mean

        first, total = _sobol(predict, encoder)
        signs = _directions(predict, encoder)
        fits.append(f"{objective} R^2={r2:.2f}" if r2 is not None else f"{objective} R^2 n/a")
        for i, name in enumerate(encoder.names):
            sign = 1.0 if signs[i] is None else signs[i]
            rows.append({"objective": objective, "parameter": name,
                         "first_order": sign * max(first[i], 0.0) + 0.0, "total_order": sign * max(total[i], 0.0) + 0.0,
                         "direction": "categorical" if signs[i] is None else ("+" if sign > 0 else "-")})
    method = (f"Sobol indices (Saltelli/Jansen estimator, Ax SobolSensitivity, {MC_SAMPLES} Monte-Carlo samples) of a "
              f"scikit-learn Gaussian process (Matern 5/2, ARD, white noise) fitted on {len(done)} completed trials "
              f"(energy in log space; 5-fold CV at the fitted kernel: {', '.join(fits)}); sign = direction of the mean effect low -> high")
    return Sensitivity(pd.DataFrame(rows, columns=COLUMNS), method)


def _fit_gp(x: np.ndarray, y: np.ndarray) -> tuple[Any, float | None]:
    """The GP and its 5-fold CV R^2 (kernel hyperparameters held at the full fit's, for speed)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
    from sklearn.model_selection import KFold, cross_val_score

    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
        length_scale=np.ones(x.shape[1]), length_scale_bounds=(1e-2, 1e3), nu=2.5
    ) + WhiteKernel(1e-2, (1e-8, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a length scale at its bound = irrelevant input
        model = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=1, random_state=0).fit(x, y)
    r2 = None
    if len(y) >= 10 and np.ptp(y) > 0:
        fixed = GaussianProcessRegressor(model.kernel_, normalize_y=True, optimizer=None)
        r2 = float(np.mean(cross_val_score(fixed, x, y, cv=KFold(5, shuffle=True, random_state=0), scoring="r2")))
    return model, r2


def _sobol(predict: Any, encoder: SpaceEncoder) -> tuple[np.ndarray, np.ndarray]:
    import torch
    from ax.utils.sensitivity.sobol_measures import SobolSensitivity

    # Indices are invariant to an affine change of the output, but the estimator's error
    # grows with the mean: standardise on a pilot sample first.
    low, high = encoder.bounds
    pilot = np.random.default_rng(1).uniform(low, high, size=(1024, len(low)))
    pilot[:, encoder.discrete] = np.rint(pilot[:, encoder.discrete])
    pilot_values = predict(pilot)
    center, scale = float(np.mean(pilot_values)), float(np.std(pilot_values)) or 1.0

    def function(x: torch.Tensor) -> torch.Tensor:
        values = (predict(x.detach().cpu().numpy()) - center) / scale
        return torch.as_tensor(values, dtype=torch.double)

    torch.manual_seed(0)
    estimator = SobolSensitivity(
        bounds=torch.tensor(encoder.bounds, dtype=torch.double), input_function=function,
        num_mc_samples=MC_SAMPLES, input_qmc=False, discrete_features=encoder.discrete or None,
    )
    estimator.evalute_function()  # (sic) Ax's spelling
    if float(estimator.f_total_var) <= 0:  # a flat surrogate: nothing to attribute
        zeros = np.zeros(len(encoder.names))
        return zeros, zeros
    return estimator.first_order_indices().numpy(), estimator.total_order_indices().numpy()


def _directions(predict: Any, encoder: SpaceEncoder) -> list[float | None]:
    """+1/-1: does moving a parameter from its low to its high end raise the prediction on average?"""
    rng = np.random.default_rng(0)
    low, high = encoder.bounds
    base = rng.uniform(low, high, size=(512, len(low)))
    base[:, encoder.discrete] = np.rint(base[:, encoder.discrete])
    signs: list[float | None] = []
    for i, name in enumerate(encoder.names):
        if encoder.is_unordered(name):
            signs.append(None)
            continue
        at_low, at_high = base.copy(), base.copy()
        at_low[:, i], at_high[:, i] = low[i], high[i]
        signs.append(1.0 if np.mean(predict(at_high) - predict(at_low)) >= 0 else -1.0)
    return signs


# ------------------------------------------------------------------ outputs


def sensitivity_figure(found: Sensitivity, metric: str) -> Figure:
    """Two bar charts (metric, energy): signed total index, first-order index inside it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.2), dpi=110)
    axes = fig.subplots(1, 2, sharey=False)
    for ax, objective in zip(axes, (metric, ENERGY_METRIC), strict=True):
        rows = found.table[found.table["objective"] == objective]
        if rows.empty:
            ax.text(0.5, 0.5, found.note or "no sensitivity", ha="center", va="center", wrap=True,
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        rows = rows.reindex(rows["total_order"].abs().sort_values().index)
        y = np.arange(len(rows))
        colors = ["#7f7f7f" if d == "categorical" else ("#2ca02c" if d == "+" else "#d62728")
                  for d in rows["direction"]]
        ax.barh(y, rows["total_order"], color=colors, alpha=0.35)
        ax.barh(y, rows["first_order"], height=0.4, color=colors)
        ax.set_yticks(y, rows["parameter"])
        ax.axvline(0, color="black", lw=0.6)
        ax.set_xlabel("signed Sobol index")
        ax.set_title(f"sensitivity of {objective}")
    fig.legend(handles=_legend_handles(), loc="lower center", ncol=5, fontsize=7, frameon=False)
    fig.suptitle(_wrap(found.method), fontsize=6.5)
    fig.tight_layout(rect=(0, 0.07, 1, 0.9))
    return fig


def _legend_handles() -> list[Any]:
    from matplotlib.patches import Patch

    return [Patch(color="#555555", alpha=0.35, label="total (wide bar)"),
            Patch(color="#555555", label="first order (narrow bar)"),
            Patch(color="#2ca02c", label="raises it"), Patch(color="#d62728", label="lowers it"),
            Patch(color="#7f7f7f", label="unordered choice (no direction)")]


def _wrap(text: str, width: int = 150) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))
