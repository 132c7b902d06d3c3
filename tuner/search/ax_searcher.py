"""Bayesian optimisation (and Sobol sampling) through ``ax.Client``.

Ray's own ``AxSearch`` is broken against Ax 1.3.1, so this is a small ``Searcher`` of
our own. ``bo`` runs a Sobol initialisation and then BoTorch's qLogNEHVI on the two
objectives (the metric, and ``energy_kwh`` minimised); ``sobol`` stays quasi-random.
Ax is imported here only, so trial processes never pay for it; every use of its internals
goes through :mod:`tuner.search.ax_compat`, which checks the installed Ax on import.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tuner.config import ENERGY_METRIC, Choice, FloatRange
from tuner.energy import J_PER_KWH
from tuner.search.base import Affordable, GreentuneSearcher, Outcome, SearchParam
from tuner.search.failure_model import FailureModel
from tuner.search.step_policy import (
    DEFAULT_WATTS_PER_CORE,
    FULL,
    LEAN_REFIT_GROWTH,
    Step,
    StepPolicy,
    StepTier,
)


class AxSearcher(GreentuneSearcher):
    """Multi-objective search over ``(metric, energy_kwh)`` with Ax.

    ``metric_threshold`` and ``energy_threshold_kwh`` are optional outcome constraints:
    values worse than these are not worth finding (see :meth:`_configure_objectives`).
    ``cost_aware`` (the default for ``bo``) ranks candidates by hypervolume gain per
    predicted kWh (:mod:`tuner.search.cost_aware`); the weight of the kWh cools from 1 to 0
    as ``budget_kwh`` (or ``max_trials``, whichever runs out first) is spent, and stays at
    :data:`COST_WEIGHT_WITHOUT_BUDGET` without either. ``warm_start`` (the default for
    ``bo``) starts each model fit from the last one's hyperparameters (:class:`WarmStartFits`).
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
        step: Literal["fast", "ax-default"] = "fast",
        avoid_failures: bool = True,
        log_energy: bool = True,
        budget_kwh: float | None = None,
        max_trials: int | None = None,
        cost_aware: bool = True,
        warm_start: bool = True,
        watts_per_core: float | None = None,
        step_policy: StepPolicy | None = None,
    ) -> None:
        super().__init__(space, fixed, metric=metric, mode=mode, seed=seed)
        self.step = step
        self.avoid_failures = avoid_failures
        self.log_energy = log_energy
        self.budget_kwh, self.max_trials = budget_kwh, max_trials
        self.cost_aware = cost_aware and method == "bo" and step == "fast"
        self._fits = WarmStartFits() if warm_start and method == "bo" and step == "fast" else None
        # the step's spend in proportion to a trial's (tuner.search.step_policy); bo's fast step only
        self.policy: StepPolicy | None = None
        if method == "bo" and step == "fast":
            self.policy = step_policy or StepPolicy(watts_per_core=watts_per_core or DEFAULT_WATTS_PER_CORE)
        self._queue: list[tuple[int, dict[str, Any]]] = []  # a lean step's further proposals, not yet handed out
        self._last_step_cpu_s = 0.0  # the last generation's CPU (all the proposals it made)
        self.told_kwh, self.told_trials = 0.0, 0  # every trial told, for the cost weight's schedule
        self.failures = FailureModel(self.space)
        self._rng = np.random.default_rng(seed)
        self._pending: set[tuple] = set()  # proposed, not yet told
        self.random_draws = 0  # proposals replaced by a random unseen draw (repeats, likely failures)
        self.repaired = 0  # proposals judged likely to fail, moved to a trusted neighbour
        self.affordable_draws = 0  # proposals the budget could not fit, replaced by an affordable draw
        quiet_ax_logging()
        from ax import Client
        from ax.utils.common.logger import set_stderr_log_level

        from tuner.search import ax_compat  # noqa: F401 - checks the installed Ax before it is used

        set_stderr_log_level(logging.WARNING)  # Ax logs every trial at INFO; progress lines say enough
        self.method = method
        self.client = Client(random_seed=seed)
        self.client.configure_experiment(parameters=[_ax_parameter(n, p) for n, p in self.space.items()])
        self.energy_threshold_kwh = energy_threshold_kwh
        self.metric_threshold = metric_threshold
        self._configure_objectives()
        self._discrete = method == "bo" and step == "fast" and _discrete(self.space)
        self.client.set_generation_strategy(self._generation_strategy(initial_trials))
        self._index_of: dict[int, int] = {}  # id(params) -> Ax trial index

    def _configure_objectives(self) -> None:
        """Both objectives; a threshold only where the user gave one.

        Without thresholds, qLogNEHVI infers its reference point from the data (just
        beyond the observed nadir), which keeps the search on the region where the front
        is. Fixed loose thresholds (the worst metric seen, the whole budget's kWh) made
        the hypervolume improvements of cheap trials look negligible (docs/search.md has
        the figures). greentune computes the Pareto front itself (``tuner.pareto``), so
        Ax's frontier, which needs thresholds on both objectives, is never asked for.
        """
        constraints = []
        if self.metric_threshold is not None:
            op = ">=" if self.mode == "max" else "<="
            constraints.append(f"{self.metric} {op} {self.metric_threshold!r}")
        if self.energy_threshold_kwh is not None:
            constraints.append(f"{ENERGY_METRIC} <= {self._energy_value(self.energy_threshold_kwh)!r}")
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
        if self.cost_aware:
            from tuner.search.cost_aware import CostAwareLogNEHVI, register

            register()
            acqf = CostAwareLogNEHVI
        strategy = choose_generation_strategy(struct, botorch_acqf_class=acqf)
        if self.method == "bo" and self.step == "fast":
            _make_step_fast(strategy, discrete=self._discrete)
        return strategy

    def ask(self) -> dict[str, Any] | None:
        if self.step != "fast":
            return self._ask()
        with _torch_threads(1):
            return self._ask()

    def _ask(self) -> dict[str, Any] | None:
        for _ in range(MAX_REJECTED):
            proposal = self._next_trial()
            if proposal is None:
                return None  # Ax needs a running trial's result first: the slot waits for it
            index, plain = proposal
            repeat = self.failures.seen(plain) or self._key(plain) in self._pending
            if not repeat and not (self.avoid_failures and self.failures.likely_fails(plain)):
                self._index_of[id(plain)] = index
                self._pending.add(self._key(plain))
                return plain
            if not repeat:
                repaired = self.failures.repair(plain, self._rng, lambda c: self._taken(self._key(c)))
                if repaired is not None:
                    # Its nearest neighbour the failure model trusts, without another BO step.
                    self.client.mark_trial_abandoned(index)
                    self.repaired += 1
                    index, plain = self._attach(repaired)
                    self._index_of[id(plain)] = index
                    self._pending.add(self._key(plain))
                    return plain
            # Abandoned, not failed: Ax treats abandoned arms as pending, so the next
            # proposal moves away from this one.
            self.client.mark_trial_abandoned(index)
            if repeat and not self._discrete:
                # Relaxed, the optimum keeps rounding back onto this point: a fresh draw is
                # worth more than a refit. A discrete search avoids it from now on.
                break
        return self._attach_unseen_sample()

    def _key(self, params: dict[str, Any]) -> tuple:
        return self.failures._key(params)  # noqa: SLF001 - one notion of "same configuration"

    def _taken(self, key: tuple) -> bool:
        """Whether a configuration is running, or queued to run (a lean step's batch)."""
        return key in self._pending or any(self._key(p) == key for _, p in self._queue)

    def expected_step_cpu_seconds(self) -> float:
        """CPU the next suggestion will likely cost: nothing while a batch is queued, else the last step's."""
        return 0.0 if self._queue else self._last_step_cpu_s

    def _next_trial(self) -> tuple[int, dict[str, Any]] | None:
        """The next proposal (queued from a batch, or Ax's), or ``None`` while Ax waits for data.

        With many trials at once, every trial of Ax's initial design can be running before
        any has finished; Ax then raises ``DataRequiredError`` rather than propose, and the
        study must wait. With none running (the initial trials all failed), Ax would wait
        for ever: a draw the search has not seen is taken instead.
        """
        if self._queue:
            return self._queue.pop(0)
        from ax.exceptions.core import DataRequiredError, SearchSpaceExhausted
        from ax.exceptions.generation_strategy import GenerationStrategyRepeatedPoints

        from tuner.search import ax_compat

        with warnings.catch_warnings():
            # Ax warns on every step before thresholds exist, and torch on its own internals.
            warnings.simplefilter("ignore", Warning)
            try:
                tier, batch = self._configure_step()
                self._set_cost_options(tier)
                start = time.process_time()
                with ax_compat.discrete_local_search(self._discrete), \
                        ax_compat.surrogate_fit_routed_through(self._fits.fit if self._fits else None):
                    trials = list(self.client.get_next_trials(max_trials=batch).items())
                self._last_step_cpu_s = time.process_time() - start
                if self.policy is not None and ax_compat.on_bo_node(ax_compat.generation_strategy(self.client)):
                    self.policy.observe_step(tier, self._last_step_cpu_s)
            except (GenerationStrategyRepeatedPoints, SearchSpaceExhausted):  # a small space, nearly all tried
                return self._attach(self._sample_unseen())
            except DataRequiredError:
                if self._pending:
                    return None
                return self._attach(self._sample_unseen())
        plain = [(index, {k: _plain(v) for k, v in params.items()}) for index, params in trials]
        self._queue.extend(plain[1:])
        return plain[0]

    def _configure_step(self) -> tuple[StepTier, int]:
        """This step's tier and batch (:mod:`tuner.search.step_policy`), set on Ax's BO node.

        Until the BO node runs (Ax's initial design, and the step that moves on from it)
        the step is the full one, proposing one trial.
        """
        if self.policy is None:
            return FULL, 1
        from tuner.search import ax_compat

        strategy = ax_compat.generation_strategy(self.client)
        step = self.policy.choose() if ax_compat.on_bo_node(strategy) else Step(FULL)
        options = ax_compat.bo_model_gen_options(strategy)
        options["optimizer_kwargs"] = dict(
            step.tier.discrete_optimizer_kwargs if self._discrete else step.tier.optimizer_kwargs)
        acqf = ax_compat.bo_acquisition_options(strategy)
        acqf.pop("prune_baseline", None)
        acqf.update(step.tier.acqf_kwargs)
        if self._fits is not None:
            self._fits.refit = step.tier.refit
        return step.tier, step.batch

    def cost_weight(self) -> float:
        """How much a candidate's predicted kWh divides its gain.

        It cools from 1 to 0 over the study's budget: the kWh, or the trials if those run
        out first, so the dear end of the front is still bought before the study ends.
        """
        spent = [self.told_kwh / self.budget_kwh] if self.budget_kwh else []
        spent += [self.told_trials / self.max_trials] if self.max_trials else []
        if not spent:
            return COST_WEIGHT_WITHOUT_BUDGET
        return max(0.0, 1.0 - max(spent))

    def _set_cost_options(self, tier: StepTier = FULL) -> None:
        """Give the cost-aware acquisition this step's weight and Ax's standardisation of energy.

        The model sees energy standardised over the trials Ax has data for (``StandardizeY``:
        mean and sample standard deviation); the same figures turn its prediction back into kWh.
        A lean step (the tuner's own spend is significant against the trials) adds that
        spend per trial to every candidate's kWh; the full step adds nothing.
        """
        if not self.cost_aware:
            return
        from tuner.search import ax_compat

        data = ax_compat.experiment(self.client).lookup_data().df
        energies = data.loc[data["metric_name"] == ENERGY_METRIC, "mean"].to_numpy(dtype=float)
        if len(energies) < 2:
            return  # still initialising: no model yet
        from tuner.search.cost_aware import CostAwareLogNEHVI

        strategy = ax_compat.generation_strategy(self.client)
        if ax_compat.bo_acquisition_class(strategy) is not CostAwareLogNEHVI:
            return  # a snapshot from before cost-aware search: it resumes as it began
        ax_compat.bo_acquisition_options(strategy).update(
            cost_weight=self.cost_weight(),
            energy_mean=float(energies.mean()),
            energy_std=float(energies.std(ddof=1)) or 1.0,
            energy_log10=self.log_energy,
            overhead_kwh=self.overhead_per_trial_kwh() if tier is not FULL else 0.0,
        )

    def overhead_per_trial_kwh(self) -> float:
        """The tuner's own energy per trial told so far: its CPU (steps, energy model, snapshots) at the driver's watts."""
        if self.policy is None or not self.told_trials:
            return 0.0
        return self.cpu_seconds / self.told_trials * self.policy.watts_per_core / J_PER_KWH

    def _attach_unseen_sample(self) -> dict[str, Any]:
        """After a repeat, or :data:`MAX_REJECTED` likely failures in a row: a random unseen draw."""
        self.random_draws += 1
        index, plain = self._attach(self._sample_unseen())
        self._index_of[id(plain)] = index
        self._pending.add(self._key(plain))
        return plain

    def _sample_unseen(self) -> dict[str, Any]:
        from tuner.search.baselines import sample

        draw: dict[str, Any] = {}
        for _ in range(100):
            draw = {name: sample(param, self._rng) for name, param in self.space.items()}
            if not self.failures.seen(draw) and not self._taken(self._key(draw)) \
                    and not (self.avoid_failures and self.failures.likely_fails(draw)):
                break
        return draw

    def ask_within(self, previous: dict[str, Any], affordable: Affordable) -> dict[str, Any] | None:
        """An unseen random configuration the budget can fit, in place of ``previous``.

        The acquisition has no notion of what is left of the budget, so the replacement is
        the first affordable one of :data:`~tuner.search.baselines.WITHIN_CANDIDATES`
        unseen random draws (none judged likely to fail); ``previous`` is abandoned in Ax,
        which then treats it as pending and moves away from it.
        """
        from tuner.search.baselines import WITHIN_CANDIDATES, first_affordable, sample

        seen: set[tuple] = set()
        candidates = []
        for _ in range(WITHIN_CANDIDATES):
            draw = {name: sample(param, self._rng) for name, param in self.space.items()}
            key = self._key(draw)
            if key in seen or self.failures.seen(draw) or self._taken(key) \
                    or (self.avoid_failures and self.failures.likely_fails(draw)):
                continue
            seen.add(key)
            candidates.append(draw)
        choice = first_affordable(candidates, affordable)
        if choice is None:
            return None
        index = self._index_of.pop(id(previous), None)
        if index is not None:
            self.client.mark_trial_abandoned(index)
        self._pending.discard(self._key(previous))
        self.affordable_draws += 1
        index, plain = self._attach(choice)
        self._index_of[id(plain)] = index
        self._pending.add(self._key(plain))
        return plain

    def _attach(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return self.client.attach_trial(parameters=params), dict(params)

    def tell(self, params: dict[str, Any], outcome: Outcome) -> None:
        index = self._index_of.pop(id(params))
        self._pending.discard(self._key(params))
        if outcome.status != "stopped":
            self.failures.add(params, failed=outcome.status == "failed")
        self.told_kwh += outcome.energy_kwh or 0.0
        self.told_trials += 1
        if outcome.status == "completed":
            assert outcome.metric is not None
            if self.policy is not None:
                self.policy.observe_trial(outcome.energy_kwh)
            self.client.complete_trial(
                index, raw_data={self.metric: outcome.metric, ENERGY_METRIC: self._energy_value(outcome.energy_kwh)}
            )
        elif outcome.status == "failed":
            self.client.mark_trial_failed(index, failed_reason=outcome.error)
        else:
            self.client.mark_trial_abandoned(index)

    def _energy_value(self, kwh: float | None) -> float | None:
        """What Ax sees as ``energy_kwh``: log10 kWh by default.

        Energies of a space span orders of magnitude (epochs x batch size x power), so a GP
        fits log energy far better, and a hypervolume in log energy values a 10x saving on a
        cheap trial as much as on a dear one. The threshold is transformed alike.
        """
        if kwh is None or not self.log_energy:
            return kwh
        return math.log10(max(kwh, 1e-12))

    def tell_ran(self, params: dict[str, Any], ran: dict[str, Any], outcome: Outcome) -> None:
        """A trial proposed as ``params`` but stopped early: what it measured belongs to ``ran``.

        The proposed trial is abandoned, and ``ran`` (e.g. fewer epochs) is attached and told
        the outcome, so the model learns from the energy spent instead of losing it.
        """
        self.client.mark_trial_abandoned(self._index_of.pop(id(params)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            index = self.client.attach_trial(parameters=ran)
        self._index_of[id(ran)] = index
        self.tell(ran, outcome)

    def save(self, checkpoint_path: str) -> None:
        """Ax's own JSON snapshot: experiment, data and generation strategy."""
        self.client.save_to_json_file(checkpoint_path)

    def save_state(self, path: Path) -> bool:
        """Ax's snapshot (what ``Client.save_to_json_file`` writes), never half-written."""
        from tuner.atomic import atomic_write
        from tuner.search import ax_compat

        snapshot = ax_compat.json_snapshot(self.client)
        atomic_write(path, lambda handle: handle.write(json.dumps(snapshot)))
        return True

    def resume(self, history: Sequence[tuple[dict[str, Any], Outcome]], state: Path | None = None) -> None:
        """Load Ax's snapshot, then reconcile it with the ledger's history.

        The snapshot can lag the ledger by the trial that finished as the driver died, and
        holds trials that were running then: those still open are told their outcome from
        the history (or attached if missing), and the rest abandoned, so Ax has every
        result once and nothing pending forever. The failure model is rebuilt from history.
        """
        if state is not None and state.exists():
            from ax import Client

            try:
                self.client = Client.load_from_json_file(str(state))
            except Exception as exc:  # noqa: BLE001 - the ledger's history can rebuild what Ax knew
                logging.getLogger("tuner").warning(
                    "could not load the Ax snapshot %s (%s: %s); rebuilding Ax from the ledger's history",
                    state, type(exc).__name__, exc)
        from tuner.search import ax_compat

        done: set[tuple] = set()
        still_open: dict[tuple, list[int]] = {}
        for index, trial in ax_compat.experiment(self.client).trials.items():
            key = self._key({k: _plain(v) for k, v in trial.arm.parameters.items()})  # type: ignore[attr-defined]
            if trial.status.is_completed or trial.status.is_failed:
                done.add(key)
            elif not trial.status.is_terminal:  # abandoned proposals (repeats) tell nothing
                still_open.setdefault(key, []).append(index)
        for params, outcome in history:
            plain = {name: params.get(name) for name in self.space}
            key = self._key(plain)
            if key in done:
                self.told_kwh += outcome.energy_kwh or 0.0
                self.told_trials += 1
                if self.policy is not None and outcome.status == "completed":
                    self.policy.observe_trial(outcome.energy_kwh)
                if outcome.status != "stopped":
                    self.failures.add(plain, failed=outcome.status == "failed")
                continue
            opened = still_open.get(key)
            self._index_of[id(plain)] = opened.pop() if opened else self._attach(plain)[0]
            self.tell(plain, outcome)
            done.add(key)
        for indices in still_open.values():
            for index in indices:
                self.client.mark_trial_abandoned(index)

    def restore(self, checkpoint_path: str) -> None:
        from ax import Client

        self.client = Client.load_from_json_file(checkpoint_path)
        self._queue.clear()  # the snapshot's open trials are not this searcher's queue

    @property
    def generation_strategy_name(self) -> str:
        from tuner.search import ax_compat

        return ax_compat.generation_strategy(self.client).name


COST_WEIGHT_WITHOUT_BUDGET = 0.5  # without a budget there is nothing to cool towards; measured by zeus_traces.py
MAX_REJECTED = 5  # proposals judged likely to fail, in a row, before a random unseen draw


# The fast step's acquisition-optimiser settings (Ax 1.3.1 defaults: 20 restarts, 1024 raw
# samples, 128 MC samples): the full tier of tuner.search.step_policy. Measured by
# benchmarks/overhead.py, hypervolume by zeus_traces.py.
FAST_OPTIMIZER_KWARGS: dict[str, Any] = FULL.optimizer_kwargs
FAST_ACQF_KWARGS: dict[str, Any] = FULL.acqf_kwargs


# Local search over a discrete space: from the ``num_restarts`` best of ``raw_samples``
# random points, move to the best neighbour (one parameter one value away) until none is
# better, never onto a point tried or pending. Measured by benchmarks/zeus_traces.py.
FAST_DISCRETE_OPTIMIZER_KWARGS: dict[str, Any] = FULL.discrete_optimizer_kwargs
MAX_LOCAL_SEARCH_VALUES = 100  # BoTorch's MAX_CARDINALITY_FOR_LOCAL_SEARCH


def _discrete(space: dict[str, SearchParam]) -> bool:
    """Whether every parameter is discrete with at most :data:`MAX_LOCAL_SEARCH_VALUES` values."""
    return all(
        not isinstance(param, FloatRange)
        and (len(param.values) if isinstance(param, Choice) else param.high - param.low + 1) <= MAX_LOCAL_SEARCH_VALUES
        for param in space.values()
    )


def _make_step_fast(strategy: Any, discrete: bool = False) -> None:
    """Cheaper acquisition settings, and a search that suits the space.

    A discrete space (choices and small integer ranges, e.g. batch size x power limit x
    epochs) stays discrete, and the step runs under :func:`ax_compat.discrete_local_search`.
    It then never proposes a configuration already tried or pending: relaxed to continuous
    values, the optimum rounded back onto a tried point in most steps on the Zeus traces,
    and each such repeat cost a random draw. Ax's own choice below 10,000 points, scoring
    every point, took several times as long per step there and found no better front.

    Otherwise ints and choices are relaxed to continuous values in the model. Ax's default
    keeps them discrete, which sends the acquisition optimiser to
    ``optimize_acqf_mixed_alternating``: tens of seconds per step at 50 trials on two
    cores. Relaxed (Ax rounds the candidate back onto the grid), plain ``optimize_acqf``
    runs, and fewer restarts and MC samples cut it further.

    Ax's deduplication is off: AxSearcher dedupes itself, and Ax refits up to 5 times per repeat.
    """
    from tuner.search import ax_compat

    optimizer_kwargs = FAST_DISCRETE_OPTIMIZER_KWARGS if discrete else FAST_OPTIMIZER_KWARGS
    ax_compat.configure_bo_node(
        strategy,
        model_gen_options={
            "optimizer_kwargs": dict(optimizer_kwargs),
            "acquisition_function_kwargs": dict(FAST_ACQF_KWARGS),
        },
        relax_discrete_parameters=not discrete,
        deduplicate=False,
    )


class WarmStartFits:
    """Start each GP fit from the last fit's hyperparameters; from scratch as the data grows.

    Ax fits its model from scratch on every step, and the fit is a large part of the step
    (``benchmarks/bo_step.py --profiles fast,fast-cold``; docs/search.md). One new trial
    barely moves the optimum, and started there L-BFGS converges much sooner
    (``Surrogate.fit``'s own ``state_dict`` warm start). A fit from scratch still runs whenever the data has grown by
    :data:`COLD_REFIT_GROWTH` since the last one, so the fit cannot stay in a poor optimum.
    """

    def __init__(self) -> None:
        self.state: dict[tuple, dict[str, Any]] = {}  # (outcomes, features) -> last fit's state_dict
        self.cold_size: dict[tuple, int] = {}  # training points at the last fit from scratch
        self.optimised_size: dict[tuple, int] = {}  # training points when the hyperparameters were last optimised
        self.refit = True  # False for a lean step: keep the hyperparameters while the data grew by < half
        self.warm, self.cold, self.kept = 0, 0, 0

    def fit(self, original: Any, surrogate: Any, datasets: Sequence[Any], digest: Any, **kwargs: Any) -> None:
        key = (tuple(n for d in datasets for n in d.outcome_names), tuple(digest.feature_names))
        size = max(len(d.X) for d in datasets)
        known = kwargs.get("state_dict") is None and key in self.state
        if known and not self.refit and size < LEAN_REFIT_GROWTH * self.optimised_size[key]:
            try:  # a lean step: the last hyperparameters, conditioned on the new trials
                original(surrogate, datasets, digest, **{**kwargs, "state_dict": self.state[key], "refit": False})
                self.kept += 1
                return
            except RuntimeError:  # the model's shape changed: optimise
                pass
        warm = known and (size < COLD_REFIT_GROWTH * self.cold_size[key] or not self.refit)
        if warm:
            try:
                original(surrogate, datasets, digest, **{**kwargs, "state_dict": self.state[key]})
                self.warm += 1
            except RuntimeError:  # the model's shape changed (e.g. a model list now): start afresh
                warm = False
        if not warm:
            original(surrogate, datasets, digest, **kwargs)
            self.cold += 1
            self.cold_size[key] = size
        self.optimised_size[key] = size
        self.state[key] = {name: value.detach().clone() for name, value in surrogate.model.state_dict().items()}


COLD_REFIT_GROWTH = 1.25  # a fit from scratch whenever the data grew by a quarter since the last


class _torch_threads:
    """Run a BO step on ``n`` threads (torch, BLAS, OpenMP).

    On a shared few-core driver more threads only contend, and every CPU-second of the
    driver is charged to the study's energy.
    """

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        import torch
        from threadpoolctl import threadpool_limits

        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)
        self.limits = threadpool_limits(self.n)

    def __exit__(self, *exc: object) -> None:
        import torch

        self.limits.restore_original_limits()
        torch.set_num_threads(self.before)


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


def quiet_ax_logging() -> None:
    """Drop the INFO line Ax prints on import ("Ax SQL storage initialized"); greentune uses no SQL storage.

    A filter, since Ax resets the logger's level when it creates it.
    """
    logging.getLogger("ax.storage.sqa_store.with_db_settings_base").addFilter(_warnings_only)


def _warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING
