"""Every strategy behind one ask/tell seam: greentune's searchers and the peers.

greentune's strategies are the very classes ``tune()`` drives through Ray (``AxSearcher``
for ``bo`` and ``sobol``, ``RandomSearcher``, ``GridSearcher``), called through their
``ask``/``tell``; the peers are driven through their own ask/tell APIs. Every strategy gets
the same space, the same trial cap and kWh budget (the runner stops them), and the same
failure handling: a failed trial is told as failed in the strategy's own terms, and its
kWh count. Both objectives are given as (accuracy, log10 kWh), as greentune models them.

Each strategy carries ``limits``: what the peer could not do on this suite, said in the
results rather than hidden.
"""

from __future__ import annotations

import abc
import logging
import math
import tempfile
import warnings
from typing import Any

import numpy as np

from benchmarks.suite.problems import Evaluation, Problem
from tuner.config import Choice, FloatRange, IntRange

GREENTUNE = ("bo", "sobol", "random", "grid")
PEERS = ("tpe", "nsga2", "optuna-gp", "moasha", "syne-ehvi", "smac")
STRATEGIES = GREENTUNE + PEERS


WAIT = "wait"
"""What ``ask`` returns when the strategy wants a running trial to finish first."""


class Strategy(abc.ABC):
    """``ask`` a configuration (``None``: nothing left to propose; :data:`WAIT`: not before a
    running trial finishes), ``tell`` its evaluation.

    A strategy with ``stops_early`` also decides, epoch by epoch, when to stop a trial
    (:meth:`keep_going`); the runner then reports each epoch of the problem's fidelity.
    """

    name: str
    limits: str = ""
    stops_early: bool = False

    @abc.abstractmethod
    def ask(self) -> dict[str, Any] | str | None: ...

    @abc.abstractmethod
    def tell(self, params: dict[str, Any], evaluation: Evaluation) -> None: ...

    def keep_going(self, params: dict[str, Any], epoch: int, evaluation: Evaluation) -> bool:
        return True


def _objectives(evaluation: Evaluation) -> tuple[float, float]:
    assert evaluation.accuracy is not None
    return evaluation.accuracy, math.log10(max(evaluation.kwh, 1e-12))


# ----------------------------------------------------------------------------- greentune


class Greentune(Strategy):
    """A greentune searcher through the ask/tell seam ``tune()`` drives it by.

    The very dict ``ask`` returned is told back (``AxSearcher`` keys its trials by it), as
    ``GreentuneSearcher.complete`` does; several asked before any tell stay pending in Ax.
    """

    def __init__(self, name: str, searcher: Any) -> None:
        self.name, self.searcher = name, searcher
        self.refused = 0

    def ask(self) -> dict[str, Any] | str | None:
        """``None`` from the searcher means wait (the ``GreentuneSearcher`` contract), FINISHED the end.

        Ax refuses to go past its initial Sobol trials before any has data
        (``DataRequiredError``, e.g. 8 asked before a tell); ``AxSearcher`` lets that
        escape, and nothing in ``tuner/`` catches it. The suite waits instead, as a
        searcher returning ``None`` would, and counts it in :attr:`refused`.
        """
        from ax.exceptions.core import DataRequiredError
        from ray.tune.search import Searcher

        try:
            params = self.searcher.ask()
        except DataRequiredError:
            self.refused += 1
            self.limits = f"Ax refused {self.refused} proposal(s) before any data (DataRequiredError); waited"
            return WAIT
        if params is None:
            return WAIT
        return None if params == Searcher.FINISHED else params

    def tell(self, params: dict[str, Any], evaluation: Evaluation) -> None:
        from tuner.search.base import Outcome

        if evaluation.accuracy is None:
            self.searcher.tell(params, Outcome("failed", energy_kwh=evaluation.kwh, error="simulated failure"))
        else:
            self.searcher.tell(params, Outcome("completed", evaluation.accuracy, evaluation.kwh))


def greentune(name: str, problem: Problem, seed: int, budget_kwh: float, max_trials: int) -> Greentune:
    from tuner.search import GridSearcher, RandomSearcher

    if name == "random":
        return Greentune(name, RandomSearcher(problem.space, seed=seed))
    if name == "grid":
        return Greentune(name, GridSearcher(problem.grid_space, seed=seed, resolution=problem.grid_resolution))
    from tuner.search.ax_searcher import AxSearcher

    # bo gets the run's kWh and trial caps as tune() passes a study's budget_kwh and max_trials
    searcher = AxSearcher(problem.space, seed=seed, method=name, budget_kwh=budget_kwh, max_trials=max_trials)
    from ax.utils.common.logger import set_stderr_log_level

    set_stderr_log_level(logging.ERROR)  # Ax warns each time a small space is nearly exhausted
    return Greentune(name, searcher)


# ----------------------------------------------------------------------------- Optuna


class OptunaStrategy(Strategy):
    """Optuna's multi-objective samplers through ``study.ask``/``study.tell``; failures as ``FAIL``."""

    def __init__(self, name: str, problem: Problem, seed: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        samplers = {"tpe": lambda: optuna.samplers.TPESampler(seed=seed),
                    "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
                    "optuna-gp": lambda: optuna.samplers.GPSampler(seed=seed)}
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.name, self.space = name, problem.space
        self.study = optuna.create_study(directions=["maximize", "minimize"], sampler=samplers[name]())
        self._trials: dict[int, Any] = {}
        self.limits = "ordered choices treated as unordered (Optuna has no ordered categorical)"

    def ask(self) -> dict[str, Any]:
        trial = self.study.ask()
        params = {}
        for n, p in self.space.items():
            if isinstance(p, Choice):
                params[n] = trial.suggest_categorical(n, p.values)
            elif isinstance(p, IntRange):
                params[n] = trial.suggest_int(n, p.low, p.high, log=p.log)
            else:
                params[n] = trial.suggest_float(n, p.low, p.high, log=p.log)
        self._trials[id(params)] = trial
        return params

    def tell(self, params: dict[str, Any], evaluation: Evaluation) -> None:
        import optuna

        trial = self._trials.pop(id(params))
        if evaluation.accuracy is None:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, list(_objectives(evaluation)))


# ----------------------------------------------------------------------------- Syne Tune


def _syne_space(space: dict[str, Any], drop: str | None = None) -> dict[str, Any]:
    from syne_tune.config_space import choice, lograndint, loguniform, ordinal, randint, uniform

    out: dict[str, Any] = {}
    for n, p in space.items():
        if n == drop:
            continue
        if isinstance(p, Choice):
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in p.values)
            # Syne Tune's ordinal needs numbers for nearest-neighbour order; equal spacing otherwise
            out[n] = ordinal(p.values, kind="nn" if numeric else "equal") if p.ordered else choice(p.values)
        elif isinstance(p, IntRange):
            out[n] = (lograndint if p.log else randint)(p.low, p.high)
        else:
            out[n] = (loguniform if p.log else uniform)(p.low, p.high)
    return out


class SyneTune(Strategy):
    """Syne Tune schedulers through ``suggest`` / ``on_trial_add`` / ``on_trial_complete``.

    ``moasha``: multi-objective ASHA; it searches everything but the problem's fidelity
    (epochs), which it spends as its resource, stopping trials at rungs (1, 3, 9, ...
    epochs) on non-dominated sorting; a stopped trial counts as the epochs it ran.
    ``syne-ehvi``: Syne Tune's BoTorch expected hypervolume improvement (single fidelity).
    Both minimise (-accuracy, log10 kWh); a failure is ``on_trial_error``.
    """

    def __init__(self, name: str, problem: Problem, seed: int) -> None:
        from syne_tune.optimizer.baselines import EHVI
        from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

        logging.getLogger("syne_tune").setLevel(logging.ERROR)
        np.random.seed(seed)  # MOASHA draws brackets and configurations from numpy's global generator
        self.name, self.problem = name, problem
        self.metrics = ["neg_accuracy", "log_kwh"]
        self.fidelity = problem.fidelity if name == "moasha" else None
        if name == "moasha":
            if self.fidelity is None:
                raise ValueError(f"{problem.name} has no fidelity parameter for MOASHA")
            top = problem.space[self.fidelity].high
            self.scheduler = MOASHA(_syne_space(problem.space, drop=self.fidelity), metrics=self.metrics,
                                    do_minimize=True, time_attr="epoch", max_t=top, grace_period=1,
                                    reduction_factor=3, random_seed=seed)
            self.stops_early = True
            self.limits = ("asynchronous stopping decided from the reports so far; with several trials at "
                           "once the simulation replays a trial's epochs when it starts")
        else:
            self.scheduler = EHVI(_syne_space(problem.space), metrics=self.metrics, do_minimize=True,
                                  random_seed=seed)
            self.limits = ("no failure model: a failed trial is only dropped (on_trial_error); runs with "
                           "torch's default dtype set to float64 around each suggest (else BoTorch 0.18 refuses it)")
        self._trials: dict[int, Any] = {}
        self._next_id = 0

    def ask(self) -> dict[str, Any] | None:
        from datetime import datetime

        import torch
        from syne_tune.backend.trial_status import Trial

        default = torch.get_default_dtype()
        # Syne Tune's EHVI fits in double but builds its candidates in the default float32,
        # which BoTorch 0.18's fused log-hypervolume refuses ("expected Double but found Float")
        torch.set_default_dtype(torch.float64)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                suggestion = self.scheduler.suggest()
        finally:
            torch.set_default_dtype(default)
        if suggestion is None or suggestion.config is None:
            return None
        params = {n: _plain(v) for n, v in suggestion.config.items() if n in self.problem.space}
        if self.fidelity:
            params[self.fidelity] = self.problem.space[self.fidelity].high
        trial = Trial(trial_id=self._next_id, config=dict(suggestion.config), creation_time=datetime.now())
        self._next_id += 1
        self.scheduler.on_trial_add(trial)
        self._trials[id(params)] = trial
        return params

    def _result(self, evaluation: Evaluation, epoch: int | None = None) -> dict[str, Any]:
        acc, log_kwh = _objectives(evaluation)
        result = {"neg_accuracy": -acc, "log_kwh": log_kwh}
        if epoch is not None:
            result["epoch"] = epoch
        return result

    def keep_going(self, params: dict[str, Any], epoch: int, evaluation: Evaluation) -> bool:
        from syne_tune.optimizer.scheduler import SchedulerDecision

        if evaluation.accuracy is None:
            return False
        decision = self.scheduler.on_trial_result(self._trials[id(params)], self._result(evaluation, epoch))
        return decision == SchedulerDecision.CONTINUE

    def tell(self, params: dict[str, Any], evaluation: Evaluation) -> None:
        trial = self._trials.pop(id(params))
        if evaluation.accuracy is None:
            if hasattr(self.scheduler, "on_trial_error"):
                self.scheduler.on_trial_error(trial)
            if self.fidelity:
                self.scheduler.on_trial_remove(trial)
            return
        epoch = params.get(self.fidelity) if self.fidelity else None
        if self.fidelity:
            self.scheduler.on_trial_complete(trial, self._result(evaluation, epoch))
        else:
            self.scheduler.on_trial_complete(trial, self._result(evaluation))


# ----------------------------------------------------------------------------- SMAC


class Smac(Strategy):
    """SMAC3's multi-objective optimisation (ParEGO scalarisation) through ``ask``/``tell``.

    The random-forest facade needs ``pyrfr``; without it the Gaussian-process facade runs
    instead, and the name says which (``smac`` is RF, ``smac-gp`` the fallback).
    """

    def __init__(self, name: str, problem: Problem, seed: int, max_trials: int) -> None:
        """A crashed trial is told as ``CRASHED`` at (accuracy 0, its kWh): finite, as ParEGO needs."""
        from ConfigSpace import (
            Categorical,
            ConfigurationSpace,
            Float,
            Integer,
            OrdinalHyperparameter,
        )
        from smac import BlackBoxFacade, HyperparameterOptimizationFacade, Scenario
        from smac.multi_objective.parego import ParEGO

        logging.getLogger("smac").setLevel(logging.ERROR)
        cs = ConfigurationSpace(seed=seed)
        self.kinds: dict[str, Any] = {}
        for n, p in problem.space.items():
            if isinstance(p, Choice):
                values = [str(v) for v in p.values]  # ConfigSpace wants one hashable type; mapped back
                self.kinds[n] = dict(zip(values, p.values, strict=True))
                cs.add(OrdinalHyperparameter(n, values) if p.ordered else Categorical(n, values))
            elif isinstance(p, IntRange):
                cs.add(Integer(n, (p.low, p.high), log=p.log))
            elif isinstance(p, FloatRange):
                cs.add(Float(n, (p.low, p.high), log=p.log))
        self.output = tempfile.TemporaryDirectory(prefix="suite-smac-")
        scenario = Scenario(cs, objectives=["neg_accuracy", "log_kwh"], n_trials=max_trials, seed=seed,
                            deterministic=True, output_directory=self.output.name)
        try:
            import pyrfr  # noqa: F401

            facade, self.name = HyperparameterOptimizationFacade, "smac"
        except ImportError:
            facade, self.name = BlackBoxFacade, "smac-gp"
        self.smac = facade(scenario, target_function=lambda config, seed=0: [0.0, 0.0],  # never called: ask/tell
                           multi_objective_algorithm=ParEGO(scenario), overwrite=True, logging_level=40)
        self._infos: dict[int, Any] = {}
        self.limits = ("ParEGO scalarises the two objectives with a random weight per trial; "
                       + ("random forest surrogate" if self.name == "smac" else "pyrfr missing: GP facade"))

    def ask(self) -> dict[str, Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            info = self.smac.ask()
        config = dict(info.config)
        params = {n: self.kinds[n][v] if n in self.kinds else _plain(v) for n, v in config.items()}
        self._infos[id(params)] = info
        return params

    def tell(self, params: dict[str, Any], evaluation: Evaluation) -> None:
        from smac.runhistory.dataclasses import TrialValue
        from smac.runhistory.enumerations import StatusType

        info = self._infos.pop(id(params))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if evaluation.accuracy is None:
                # accuracy 0 at the kWh it spent: ParEGO normalises costs, and an infinite one is NaN there
                self.smac.tell(info, TrialValue(cost=[0.0, math.log10(max(evaluation.kwh, 1e-12))],
                                                status=StatusType.CRASHED))
            else:
                acc, log_kwh = _objectives(evaluation)
                self.smac.tell(info, TrialValue(cost=[-acc, log_kwh]))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ----------------------------------------------------------------------------- factory


def make(name: str, problem: Problem, seed: int, budget_kwh: float, max_trials: int) -> Strategy:
    """Strategy ``name`` on ``problem``: ImportError when a peer is not installed, ValueError when it cannot run."""
    if name in GREENTUNE:
        return greentune(name, problem, seed, budget_kwh, max_trials)
    if name in ("tpe", "nsga2", "optuna-gp"):
        return OptunaStrategy(name, problem, seed)
    if name in ("moasha", "syne-ehvi"):
        return SyneTune(name, problem, seed)
    if name == "smac":
        return Smac(name, problem, seed, max_trials)
    raise SystemExit(f"unknown strategy {name!r}: one of {', '.join(STRATEGIES)}")
