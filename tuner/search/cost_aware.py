"""qLogNEHVI per predicted kWh: a hypervolume gain is worth its energy.

Plain qLogNEHVI ranks candidates by the hypervolume they may add, whatever they cost to
run, so early on it spends whole epochs-heavy trials exploring corners of the space. This
divides that gain by the candidate's predicted energy raised to ``cost_weight`` (Lee et
al., "Cost-aware Bayesian optimization", 2020): in log space, ``log HVI - w * ln kWh``.
With a budget, ``w`` cools from 1 to 0 as the budget is spent (their CArBO schedule; the
searcher counts kWh and trials, whichever runs out first), so the search starts cheap and
ends free to buy the dear points of the front.

The energy model is the GP's own: the posterior mean of the energy objective, which Ax has
standardised; ``energy_mean`` and ``energy_std`` undo that, and ``energy_log10`` says the
searcher models log10 kWh (the default) rather than kWh.

``overhead_kwh`` is what the tuner itself spends per trial (its BO step, energy model and
bookkeeping), added to every candidate's predicted kWh: a trial costs the study its own
energy and the choosing of it. The searcher passes it only when that spend is significant
against the trials (:mod:`tuner.search.step_policy`'s lean step); then a trial of half a
CPU-second no longer looks ten times cheaper than one of five when choosing either costs
half a CPU-second.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from botorch.acquisition.input_constructors import construct_inputs_qLogNEHVI
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.utils.transforms import t_batch_mode_transform
from torch import Tensor

from tuner.search import ax_compat


class CostAwareLogNEHVI(qLogNoisyExpectedHypervolumeImprovement):
    """``log qNEHVI(x) - cost_weight * ln(predicted kWh of x)``."""

    def __init__(self, *args: Any, cost_weight: float = 0.0, energy_index: int = 1,
                 energy_mean: float = 0.0, energy_std: float = 1.0, energy_log10: bool = True,
                 overhead_kwh: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cost_weight = cost_weight
        self.overhead_kwh = overhead_kwh
        self.energy_index = energy_index
        self.energy_mean, self.energy_std, self.energy_log10 = energy_mean, energy_std, energy_log10

    @t_batch_mode_transform()
    def forward(self, X: Tensor) -> Tensor:
        value = super().forward(X)
        if self.cost_weight == 0.0:
            return value
        return value - self.cost_weight * self.log_kwh(X)

    def log_kwh(self, X: Tensor) -> Tensor:
        """Natural log of the predicted kWh of the q candidates together, per t-batch."""
        mean = self.model.posterior(X).mean  # b x q x m, in Ax's standardised units
        energy = -self.objective(mean)[..., self.energy_index]  # the objective is "minus energy"
        value = energy * self.energy_std + self.energy_mean
        if self.energy_log10:
            per_candidate = value * math.log(10.0)
        else:
            per_candidate = torch.log(value.clamp_min(1e-12))
        if self.overhead_kwh > 0:  # each trial also costs the tuner's choosing of it
            per_candidate = torch.logaddexp(per_candidate, torch.full_like(per_candidate, math.log(self.overhead_kwh)))
        return torch.logsumexp(per_candidate, dim=-1)


_COST_DEFAULTS: dict[str, Any] = {
    "cost_weight": 0.0, "energy_index": 1, "energy_mean": 0.0, "energy_std": 1.0, "energy_log10": True,
    "overhead_kwh": 0.0,
}


def construct_inputs_cost_aware(**kwargs: Any) -> dict[str, Any]:
    """qLogNEHVI's inputs, plus the cost settings passed through Ax's acquisition options."""
    cost = {key: kwargs.pop(key) for key in _COST_DEFAULTS if key in kwargs}
    return {**construct_inputs_qLogNEHVI(**kwargs), **cost}


# Its signature is rewritten there to name qLogNEHVI's keywords and ours (BoTorch passes no others).
ax_compat.register_input_constructor(
    CostAwareLogNEHVI, construct_inputs_cost_aware, extends=construct_inputs_qLogNEHVI, extra_keywords=_COST_DEFAULTS
)


def register() -> None:
    """Let Ax's JSON snapshots name this class (a study's ``searcher.json`` holds it)."""
    ax_compat.register_for_json_snapshots(CostAwareLogNEHVI)
