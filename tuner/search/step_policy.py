"""How much a BO step may spend: in proportion to what a trial costs.

A BO step costs driver CPU, which the study is charged for (``overhead_kwh``). Against GPU
trials (the Zeus traces: 7e-5 to 1 kWh a trial, a step about 3e-6 kWh) the step is nearly
free, and it runs in full. Against trials of a CPU-second or two (the tabular quickstart: a
median trial of about 4e-6 kWh, as much as two or three steps) the full step was a fifth of
the study's kWh. :class:`StepPolicy` decides from the median completed trial's energy:

- while the last full step cost at most :data:`TARGET_SHARE` of the median trial, every
  step is the full one (:data:`FULL`), one proposal per step, exactly as before. On the
  Zeus traces a step of 2 CPU-seconds is at most 1.1 % of the tenth-percentile trial of
  any of the 24 problems' grids, so a study there whose median trial is not among the
  cheapest tenth of its grid is searched in full (``tests/test_step_policy.py`` checks
  it on the traces themselves; ``benchmarks/zeus_before_after.py`` on the cheapest
  problems, see docs/search.md);
- otherwise the step turns *lean* (:data:`LEAN`): the GP keeps its hyperparameters (only
  conditioned on the new trials, re-optimised when the data has grown by half), no
  baseline pruning, fewer MC samples, raw samples and restarts; and it proposes a *batch*
  of up to :data:`MAX_BATCH` configurations in one step (Ax's ``get_next_trials``: one
  fit, each proposal chosen with the ones before it pending), which the searcher hands
  out over the next asks. The batch is as large as needed for the step's energy per
  proposal to reach :data:`TARGET_SHARE` of the median trial, capped.

The decision is a pure function of the step's measured CPU, the driver's watts per core
and the trials' energies (:meth:`StepPolicy.choose`), so it is tested on its own
(``tests/test_step_policy.py``), including that GPU-scale trials always get the full step.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from tuner.energy import J_PER_KWH

TARGET_SHARE = 0.02
"""Most a BO step may cost per proposal, as a share of the median completed trial's energy.
Issue 21's goal is the tuner at most 3 % of a study's kWh: the step gets 2 points of it,
the energy model's upkeep (:data:`UPKEEP_SHARE`) and the optimiser's snapshots
(``tuner.study.study.SNAPSHOT_SHARE``) half a point each, and booking results (Ax's
``tell``, the energy model's conditioning) takes the rest."""

UPKEEP_SHARE = 0.005
"""Most the energy model's kernel optimisation may cost, per trial, as a share of the median trial."""

MAX_BATCH = 4
"""Most proposals one lean step makes. A batch is chosen with its members pending, as
concurrent trials are, so it costs search quality only as more concurrency would; 4 on a
quickstart of 2 slots and about 50 trials keeps the model at most 5 trials behind."""

DEFAULT_WATTS_PER_CORE = 10.0
"""The driver's watts per busy core when the study does not say (the TDP table's fallback)."""

LEAN_REFIT_GROWTH = 1.5
"""A lean step re-optimises the GP's hyperparameters (warm-started) only when the data has
grown by half since they were last optimised; otherwise it conditions the last fit on the
new trials."""


@dataclass(frozen=True)
class StepTier:
    """One form of the BO step: the acquisition optimiser's settings and how the GP is fitted."""

    name: str
    refit: bool  # re-optimise the GP's hyperparameters on every step (warm-started)
    optimizer_kwargs: dict[str, Any] = field(hash=False)
    discrete_optimizer_kwargs: dict[str, Any] = field(hash=False)
    acqf_kwargs: dict[str, Any] = field(hash=False)


# The fast step's acquisition-optimiser settings (Ax 1.3.1 defaults: 20 restarts, 1024 raw
# samples, 128 MC samples). Measured by benchmarks/overhead.py, hypervolume by zeus_traces.py.
FULL = StepTier(
    "full", refit=True,
    optimizer_kwargs={"num_restarts": 2, "raw_samples": 128, "options": {"maxiter": 60}},
    # local search over a discrete space: from the best 4 of 256 random points (zeus_traces.py)
    discrete_optimizer_kwargs={"num_restarts": 4, "raw_samples": 256},
    acqf_kwargs={"mc_samples": 32},
)
LEAN = StepTier(
    "lean", refit=False,
    # the best of 256 random points, scored in one batch, then a few L-BFGS iterations
    optimizer_kwargs={"num_restarts": 1, "raw_samples": 256,
                      "options": {"maxiter": 5, "init_batch_limit": 256, "batch_limit": 256}},
    discrete_optimizer_kwargs={"num_restarts": 2, "raw_samples": 64},
    acqf_kwargs={"mc_samples": 16, "prune_baseline": False},
)


@dataclass(frozen=True)
class Step:
    """What the next step is: its tier, and how many proposals it makes."""

    tier: StepTier
    batch: int = 1


class StepPolicy:
    """Chooses each BO step's tier and batch from what steps and trials cost (see the module docstring).

    ``step_cpu_s`` fixes the CPU a step is taken to cost instead of measuring it, so that
    a seeded search is reproducible whatever the machine's load (tests use it).
    """

    def __init__(self, share: float = TARGET_SHARE, watts_per_core: float = DEFAULT_WATTS_PER_CORE,
                 max_batch: int = MAX_BATCH, step_cpu_s: float | None = None) -> None:
        self.share, self.watts_per_core, self.max_batch = share, watts_per_core, max(1, int(max_batch))
        self.fixed_step_cpu_s = step_cpu_s
        self.trial_kwh: list[float] = []  # completed trials' energies
        self.last_cpu_s: dict[str, float] = {}  # tier name -> CPU of its last step (all its proposals)
        self.steps: dict[str, int] = {}  # tier name -> steps taken

    def observe_trial(self, kwh: float | None) -> None:
        if kwh is not None and math.isfinite(kwh) and kwh > 0:
            self.trial_kwh.append(float(kwh))

    def observe_step(self, tier: StepTier, cpu_s: float) -> None:
        """A BO step of ``tier`` took ``cpu_s`` of driver CPU (for all the proposals it made)."""
        self.last_cpu_s[tier.name] = cpu_s
        self.steps[tier.name] = self.steps.get(tier.name, 0) + 1

    def median_trial_kwh(self) -> float | None:
        return statistics.median(self.trial_kwh) if self.trial_kwh else None

    def step_kwh(self, tier: StepTier) -> float | None:
        """What one step of ``tier`` is expected to cost, in kWh (``None`` before one was measured)."""
        cpu = self.fixed_step_cpu_s if self.fixed_step_cpu_s is not None else self.last_cpu_s.get(tier.name)
        if cpu is None and tier is LEAN and FULL.name in self.last_cpu_s:
            cpu = self.last_cpu_s[FULL.name]  # no lean step yet: priced as a full one (it costs less)
        return None if cpu is None else cpu * self.watts_per_core / J_PER_KWH

    def choose(self) -> Step:
        return choose(self.step_kwh(FULL), self.step_kwh(LEAN), self.median_trial_kwh(), self.share,
                      self.max_batch)


def choose(full_kwh: float | None, lean_kwh: float | None, median_trial_kwh: float | None,
           share: float = TARGET_SHARE, max_batch: int = MAX_BATCH) -> Step:
    """The step to take: full while it costs at most ``share`` of the median trial, else
    lean, with a batch large enough to bring its energy per proposal to ``share`` of it (capped).

    ``full_kwh`` and ``lean_kwh`` are what one step of each tier is expected to cost;
    ``None`` where nothing is known yet, in which case the step is the full one.
    """
    if full_kwh is None or median_trial_kwh is None or median_trial_kwh <= 0:
        return Step(FULL)
    if full_kwh <= share * median_trial_kwh:
        return Step(FULL)
    per_step = lean_kwh if lean_kwh is not None else full_kwh
    return Step(LEAN, max(1, min(max_batch, math.ceil(per_step / (share * median_trial_kwh)))))


def upkeep_every(cost_kwh: float | None, median_trial_kwh: float | None, trials: int, least: int,
                 share: float = UPKEEP_SHARE) -> int:
    """Trials between two runs of a periodic upkeep (the energy model's optimisation) that costs ``cost_kwh``.

    ``least`` (its own default) while it costs at most ``share`` of the median trial,
    as the full BO step is kept; otherwise as many trials as bring it to ``share`` of
    each, but never more than half the ``trials`` it was last run on, so that it still
    runs whenever the data has grown by half.
    """
    if cost_kwh is None or median_trial_kwh is None or median_trial_kwh <= 0 \
            or cost_kwh <= share * median_trial_kwh:
        return least
    return max(least, min(math.ceil(cost_kwh / (share * median_trial_kwh)), trials // 2))


__all__ = ["FULL", "LEAN", "MAX_BATCH", "TARGET_SHARE", "UPKEEP_SHARE", "Step", "StepPolicy", "StepTier", "choose", "upkeep_every"]
