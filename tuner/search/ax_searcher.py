"""Bayesian optimisation (and Sobol sampling) through ``ax.Client``.

Ray's own ``AxSearch`` is broken against Ax 1.3.1, so this is a small ``Searcher`` of
our own. ``bo`` runs a Sobol initialisation and then BoTorch's qLogNEHVI on the two
objectives (the metric, and ``energy_kwh`` minimised); ``sobol`` stays quasi-random.
Ax is imported here only, so trial processes never pay for it.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Literal

from tuner.config import ENERGY_METRIC, Choice, FloatRange
from tuner.search.base import GreentuneSearcher, Outcome, SearchParam


class AxSearcher(GreentuneSearcher):
    """Multi-objective search over ``(metric, energy_kwh)`` with Ax.

    ``thresholds`` are the objective thresholds (the reference point of the hypervolume):
    values worse than these are not worth finding. Ax needs them for both objectives to
    report a Pareto frontier; the energy threshold defaults to the study budget.
    """

    def __init__(
        self,
        space: dict[str, SearchParam],
        fixed: dict[str, Any] | None = None,
        metric: str = "accuracy",
        mode: str = "max",
        seed: int | None = None,
        *,
        method: Literal["bo", "sobol"] = "bo",
        energy_threshold_kwh: float | None = None,
        metric_threshold: float | None = None,
        initial_trials: int | None = None,
    ) -> None:
        super().__init__(space, fixed, metric=metric, mode=mode, seed=seed)
        from ax import Client
        from ax.utils.common.logger import set_stderr_log_level

        set_stderr_log_level(logging.WARNING)  # Ax logs every trial at INFO; progress lines say enough
        self.method = method
        self.client = Client(random_seed=seed)
        self.client.configure_experiment(parameters=[_ax_parameter(n, p) for n, p in self.space.items()])
        self.energy_threshold_kwh = energy_threshold_kwh
        self.metric_threshold = metric_threshold
        self._configure_objectives()
        self.client.set_generation_strategy(self._generation_strategy(initial_trials))
        self._index_of: dict[int, int] = {}  # id(params) -> Ax trial index
        self._worst_metric: float | None = None
        self._infer_metric_threshold = metric_threshold is None

    def _configure_objectives(self) -> None:
        """Both objectives, with a threshold for each that is known.

        Without a user-given metric threshold, the worst metric among completed trials is
        used, updated as trials complete: a configuration worse than every one tried so
        far is not worth finding, and Ax needs thresholds on both objectives.
        """
        constraints = []
        if self.metric_threshold is not None:
            op = ">=" if self.mode == "max" else "<="
            constraints.append(f"{self.metric} {op} {self.metric_threshold!r}")
        if self.energy_threshold_kwh is not None:
            constraints.append(f"{ENERGY_METRIC} <= {self.energy_threshold_kwh!r}")
        sign = "" if self.mode == "max" else "-"
        self.client.configure_optimization(
            objective=f"{sign}{self.metric}, -{ENERGY_METRIC}", outcome_constraints=constraints
        )

    def _generation_strategy(self, initial_trials: int | None) -> Any:
        from ax.api.utils.generation_strategy_dispatch import choose_generation_strategy
        from ax.api.utils.structs import GenerationStrategyDispatchStruct
        from botorch.acquisition.multi_objective.logei import (
            qLogNoisyExpectedHypervolumeImprovement,
        )

        struct = GenerationStrategyDispatchStruct(
            method="random_search" if self.method == "sobol" else "fast",
            initialization_budget=initial_trials,
            initialization_random_seed=self.seed,
            initialize_with_center=self.method == "bo",
        )
        acqf = qLogNoisyExpectedHypervolumeImprovement if self.method == "bo" else None
        return choose_generation_strategy(struct, botorch_acqf_class=acqf)

    def ask(self) -> dict[str, Any]:
        if self._infer_metric_threshold and self._worst_metric != self.metric_threshold:
            self.metric_threshold = self._worst_metric
            self._configure_objectives()
        with warnings.catch_warnings():
            # Ax warns on every step before thresholds exist, and torch on its own internals.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            ((index, params),) = self.client.get_next_trials(max_trials=1).items()
        plain = {k: _plain(v) for k, v in params.items()}
        self._index_of[id(plain)] = index
        return plain

    def tell(self, params: dict[str, Any], outcome: Outcome) -> None:
        index = self._index_of.pop(id(params))
        if outcome.status == "completed":
            assert outcome.metric is not None
            worse = min if self.mode == "max" else max
            self._worst_metric = outcome.metric if self._worst_metric is None else worse(self._worst_metric, outcome.metric)
            self.client.complete_trial(
                index, raw_data={self.metric: outcome.metric, ENERGY_METRIC: outcome.energy_kwh}
            )
        elif outcome.status == "failed":
            self.client.mark_trial_failed(index, failed_reason=outcome.error)
        else:
            self.client.mark_trial_abandoned(index)

    def save(self, checkpoint_path: str) -> None:
        """Ax's own JSON snapshot: experiment, data and generation strategy."""
        self.client.save_to_json_file(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        from ax import Client

        self.client = Client.load_from_json_file(checkpoint_path)

    @property
    def generation_strategy_name(self) -> str:
        return self.client._generation_strategy.name  # noqa: SLF001 - for reports only


def _ax_parameter(name: str, param: SearchParam) -> Any:
    from ax import ChoiceParameterConfig, RangeParameterConfig

    if isinstance(param, Choice):
        kinds = {type(v) for v in param.values}
        kind = {bool: "bool", str: "str", int: "int"}.get(kinds.pop(), "float") if len(kinds) == 1 else "float"
        values = [float(v) for v in param.values] if kind == "float" else list(param.values)
        return ChoiceParameterConfig(
            name=name, values=values, parameter_type=kind, is_ordered=param.ordered
        )
    return RangeParameterConfig(
        name=name,
        bounds=(param.low, param.high),
        parameter_type="float" if isinstance(param, FloatRange) else "int",
        scaling="log" if param.log else "linear",
    )


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
