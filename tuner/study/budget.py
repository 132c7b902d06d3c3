"""Where the ledger acts on Ray Tune: admitting trials, and stopping them.

:class:`BudgetGate` is the study's Ray ``Searcher``: no trial starts unless its predicted
energy (the proposal's own, at its upper band) fits, and every finished trial is told to
the optimiser from its ledger record (one energy total). :class:`StudyStopper` is the study's Ray ``Stopper``: it books each
result in the ledger first, then stops everything once the budget is spent, or one trial
that Pareto early stopping gives up on.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

from ray.tune import Stopper
from ray.tune.search import Searcher

from tuner.energy import J_PER_KWH
from tuner.search.base import GreentuneSearcher, Outcome
from tuner.search.early_stopping import ParetoEarlyStopping
from tuner.search.energy_model import EnergyModel, EnergyPrediction
from tuner.study.ledger import EnergyLedger
from tuner.study.record import TrialStatus

if TYPE_CHECKING:
    from tuner.config import StudyConfig


def budget_shortfall(cfg: StudyConfig, ledger: EnergyLedger) -> str | None:
    """Why the budget left looks too small for one trial (one line), or ``None`` if it fits.

    Before any trial has completed, one trial is estimated from what is known: its CPUs x
    the ledger's watts per core x ``expected_trial_s`` if given, and never less than one
    ``report_interval_s``, since the budget cannot stop a trial before its first heartbeat.
    GPU power is not known before a trial, so a GPU trial spends more than this. Once
    trials have completed (a resumed study), their median energy is the estimate.
    """
    left = ledger.budget_kwh - ledger.total_kwh
    median = ledger.expected_trial_kwh
    if median is not None:
        if left >= median:
            return None
        return (f"{left:.3g} kWh left of budget_kwh is less than the median completed trial ({median:.3g} kWh); "
                "no further trial is likely to complete")
    cpus, watts = cfg.resources_per_trial.cpu or 1.0, ledger.watts_per_core
    interval = cfg.energy.report_interval_s
    if cfg.expected_trial_s is not None and cfg.expected_trial_s > interval:
        seconds, what = cfg.expected_trial_s, " expected_trial_s"
    else:
        seconds, what = interval, ", one report interval: the budget cannot stop a trial sooner"
    trial_kwh = cpus * watts * seconds / J_PER_KWH
    if left >= trial_kwh:
        return None
    spent = "" if ledger.total_kwh == 0 else f" ({left:.3g} kWh left)"
    return (f"budget_kwh {ledger.budget_kwh:.3g} kWh{spent} is less than one trial is expected to spend "
            f"({trial_kwh:.3g} kWh: {cpus:g} CPU x {watts:.3g} W x {seconds:.3g} s{what}); the study will "
            "likely end with no completed trial: raise budget_kwh")


logger = logging.getLogger("tuner")


class BudgetGate(Searcher):
    """Wraps a searcher so that no trial starts unless its predicted energy fits.

    Each proposal is priced by the study's :class:`~tuner.search.energy_model.EnergyModel`
    (fitted on the completed trials in the ledger), and admitted only if its upper band
    fits in what is left (:meth:`EnergyLedger.can_start_trial`). A proposal that does not
    fit is said so in the log; the searcher is asked for an affordable configuration
    instead (:meth:`GreentuneSearcher.suggest_within`). If it has none, the answer is
    "wait" (``None``) while trials still run, since one of them may finish under its charge
    and leave room, and the proposal is offered again; with nothing running, the search
    is ``FINISHED``, and :attr:`finish_reason` says why, with the figures.

    Fail fast: once the ledger holds ``max_consecutive_failures`` failed trials in a row
    (counted from this gate's start, so that a resumed study whose cause was fixed starts
    afresh), no trial starts any more; running ones finish. ``0`` or ``None`` never stops.
    """

    def __init__(self, inner: GreentuneSearcher, ledger: EnergyLedger, max_trials: int | None,
                 max_consecutive_failures: int | None = None, energy_model: EnergyModel | None = None) -> None:
        # No metric towards Ray: heartbeats carry energy only, and Ray would reject them.
        super().__init__(metric=None, mode=None)
        self.inner = inner
        self.ledger = ledger
        self.max_trials = max_trials
        self.max_consecutive_failures = max_consecutive_failures or None
        self.started_at = time.time()
        self.energy_model = energy_model if energy_model is not None else EnergyModel(inner.space)
        self.finish_reason: str | None = None
        self.consecutive_failures: int | None = None  # set when the failures stopped the study
        self._held: tuple[str, dict[str, Any]] | None = None  # (trial id, proposal) waiting for room
        self._said: set[str] = set()  # proposals already reported as not fitting

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.ledger.interrupted_by is not None:
            return self._finish(f"interrupted by {self.ledger.interrupted_by}")
        if self.consecutive_failures is not None or self._failing():
            return self._finish("")
        if self.max_trials is not None and self.ledger.n_trials >= self.max_trials:
            return self._finish("max_trials reached")
        if self.ledger.exhausted or self.ledger.stopped_at is not None:
            return None if self.ledger.running() else self._finish("energy budget spent")
        self._refit()
        if not self.ledger.can_start_trial(_FREE if self.energy_model.fitted else None):
            # no room even for a free trial (or, before the model can price one, for the
            # median): asking the searcher would only cost a step
            if self.ledger.running():
                return None
            self._drop_held()
            return self._finish(self._cannot_fit(None, self.ledger.room_kwh()))
        if self._held is not None:
            params = self._rekey(*self._held, trial_id)
        else:
            params = self.inner.suggest(trial_id)
            if params == Searcher.FINISHED:
                return self._finish("search space exhausted")
            if not isinstance(params, dict):
                return params  # None: the searcher waits
        prediction = self._predict(params)
        if self.ledger.can_start_trial(prediction):
            return self._admit(trial_id, params, prediction)
        room = self.ledger.room_kwh()
        cheaper = self._cheaper(trial_id, params, prediction, room)
        if cheaper is not None:
            return cheaper
        self._held = (trial_id, params)
        if self.ledger.running():
            return None
        self._drop_held()
        return self._finish(self._cannot_fit(prediction, room))

    def _drop_held(self) -> None:
        """The study ends with a proposal that never ran: the searcher forgets it."""
        if self._held is not None:
            self.inner.withdraw(self._held[0])
            self._held = None

    def _refit(self) -> None:
        """Fit the energy model on the completed trials, if any completed since the last fit.

        Its CPU time is the tuner's overhead, charged like the searcher's own. A model
        that cannot fit must not stop a study: the gate then admits on the median.
        """
        start = time.process_time()
        done = [r for r in self.ledger.completed() if r.energy_kwh > 0]
        try:
            self.energy_model.fit([r.params for r in done], [r.energy_kwh for r in done])
            self._space_optimisations()
        except Exception as exc:  # noqa: BLE001
            logger.warning("the energy model could not be fitted (%s: %s); trials are admitted on the median "
                           "completed trial instead", type(exc).__name__, exc)
            self.energy_model = EnergyModel(self.energy_model.space, self.energy_model.level, math.inf)
        finally:
            self.inner.cpu_seconds += time.process_time() - start

    def _space_optimisations(self) -> None:
        """Against trials as cheap as the model's optimisation, optimise it less often
        (:func:`tuner.search.step_policy.upkeep_every`): in proportion to what a trial costs."""
        from tuner.search.energy_model import REOPTIMISE_EVERY
        from tuner.search.step_policy import upkeep_every

        model = self.energy_model
        cpu = getattr(model, "optimise_cpu_s", None)
        if cpu is None:
            return
        model.reoptimise_every = upkeep_every(cpu * self.ledger.watts_per_core / J_PER_KWH,
                                              self.ledger.expected_trial_kwh, model._optimised_at,  # noqa: SLF001
                                              REOPTIMISE_EVERY)

    def _predict(self, params: dict[str, Any]) -> EnergyPrediction | None:
        """The proposal's predicted energy (``None`` while the model cannot say)."""
        start = time.process_time()
        try:
            return self.energy_model.predict(params)
        finally:
            self.inner.cpu_seconds += time.process_time() - start

    def _admit(self, trial_id: str, params: dict[str, Any], prediction: EnergyPrediction | None) -> dict[str, Any]:
        self._held = None
        self.ledger.start(trial_id, params, prediction)
        return params

    def _cheaper(self, trial_id: str, params: dict[str, Any], prediction: EnergyPrediction | None,
                 room: float) -> dict[str, Any] | None:
        """Ask the searcher for a configuration whose upper band fits, and say what happened."""
        if prediction is None:
            return None  # nothing to price a replacement with

        def affordable(candidates: list[dict[str, Any]]) -> list[bool]:
            return [bool(u <= room) for u in self.energy_model.predict_upper(candidates)]

        replacement = self.inner.suggest_within(trial_id, affordable)  # charges its own CPU to the tuner
        cheaper = None if replacement is None else self.energy_model.predict(replacement)
        key = repr(sorted(params.items()))
        if replacement is not None or key not in self._said:
            self._said.add(key)
            then = ("waiting for a running trial to finish" if self.ledger.running() else "ending the study")
            if replacement is not None:
                then = (f"running an affordable one instead: {cheaper.describe() if cheaper else 'not priced'} "
                        f"({_short(replacement)})")
            logger.warning("the proposed trial (%s) does not fit the energy budget: %s, %.3g kWh left; %s",
                           _short(params), prediction.describe(), room, then)
        return None if replacement is None else self._admit(trial_id, replacement, cheaper)

    def _cannot_fit(self, prediction: EnergyPrediction | None, room: float) -> str:
        left = max(room, 0.0)
        if prediction is None:
            median = self.ledger.expected_trial_kwh
            about = "" if median is None else f"median completed trial {median:.3g} kWh, "
            return f"energy budget cannot fit another trial ({about}{left:.3g} kWh left)"
        return (f"energy budget cannot fit the next proposed trial (predicted {prediction.kwh:.3g} kWh "
                f"[upper {prediction.upper_kwh:.3g}], {left:.3g} kWh left)")

    def _rekey(self, old_id: str, params: dict[str, Any], trial_id: str) -> dict[str, Any]:
        """Offer a held proposal again under Ray's new trial id."""
        self.inner.rekey(old_id, trial_id)
        return params

    def _failing(self) -> bool:
        """Whether the last ``max_consecutive_failures`` finished trials all failed; if so,
        the reason names how many and the last error's first line."""
        if self.max_consecutive_failures is None:
            return False
        streak = self.ledger.failure_streak(since=self.started_at)
        if len(streak) < self.max_consecutive_failures:
            return False
        self.consecutive_failures = len(streak)
        error = (streak[-1].error or "no error recorded").strip().splitlines() or ["no error recorded"]
        self.finish_reason = f"{len(streak)} consecutive trial failures: {_shorten(error[0])}"
        return True

    def _finish(self, reason: str) -> str:
        self.finish_reason = self.finish_reason or reason
        return Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell the optimiser what the ledger booked, not Ray's last result: a paused and
        restarted trial's last result holds only its last run's energy."""
        if result:
            self.ledger.observe(trial_id, result)  # idempotent: the stopper may have booked it
        if error:
            record = self.ledger.get(trial_id)
            outcome = Outcome("failed", error=None if record is None else record.error)
        else:
            outcome = self.ledger.outcome(trial_id)
        self.inner.complete(trial_id, outcome)

    def save(self, checkpoint_path: str) -> None:
        self.inner.save(checkpoint_path)


_FREE = EnergyPrediction(0.0, 0.0, 0.0, 0)  # a trial that costs nothing: is there room at all?


def _short(params: dict[str, Any], limit: int = 200) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return text if len(text) <= limit else text[:limit] + "..."


class StudyStopper(Stopper):
    """Books every result in the ledger, then stops: all trials once the ledger (projected
    one report interval ahead) reaches the budget; one trial when ``early_stopping`` says
    its curve cannot reach the front. Ray calls it on every result, before any callback."""

    def __init__(self, ledger: EnergyLedger, early_stopping: ParetoEarlyStopping | None = None) -> None:
        self.ledger = ledger
        self.early_stopping = early_stopping

    def __call__(self, trial_id: str, result: dict) -> bool:
        record = self.ledger.observe(trial_id, result)
        if self.ledger.should_stop():
            return True
        if self.early_stopping is None:
            return False
        reason = self.early_stopping.observe(
            trial_id, record.n_reports, record.energy_kwh, record.metrics.get(self.ledger.metric),
            finished=record.final, completed=record.status is TrialStatus.COMPLETED,
        )
        if reason is not None:
            self.ledger.stopping(trial_id, reason)
        return reason is not None

    def stop_all(self) -> bool:
        return self.ledger.should_stop() or self.ledger.interrupted_by is not None


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
