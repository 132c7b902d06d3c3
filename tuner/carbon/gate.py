"""Hold trial launches for low-carbon hours, never past the study's deadline.

:class:`CarbonGate` wraps a Ray Tune searcher the way ``BudgetGate`` does: ``suggest``
answers ``None`` ("not yet") while the plan says wait and otherwise asks the inner
searcher. The plan is :func:`~tuner.carbon.schedule.plan_start` over the provider's
forecast for the remaining work, refreshed at most every ``replan_every``; once the
latest start that still meets the deadline arrives, the gate stops waiting for good.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd
from ray.tune.search import Searcher

from tuner.carbon.base import IntensityProvider
from tuner.carbon.guard import WaitGuard, forecast_miss, stop_reason
from tuner.carbon.schedule import SchedulePolicy, StartPlan, plan_start
from tuner.result import duration_text

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: The confidence a wait already under way must keep: the median, i.e. it goes on while
#: the forecast still expects a saving net of its typical error.
WAITING_CONFIDENCE = 0.5


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Wait:
    """One stretch during which the gate held launches back, and why."""

    since: datetime
    until: datetime
    reason: str

    @property
    def seconds(self) -> float:
        return (self.until - self.since).total_seconds()


def remaining_work(durations_s: list[float], trials_left: int | None, concurrency: int) -> timedelta | None:
    """Wall time the rest of a study needs: median trial duration x rounds of ``concurrency``.

    ``None`` while no trial has finished or the number left is unknown: there is nothing
    honest to plan with yet.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if not durations_s or trials_left is None:
        return None
    rounds = math.ceil(max(trials_left, 0) / concurrency)
    return timedelta(seconds=statistics.median(durations_s) * rounds)


class CarbonGate(Searcher):
    """Wraps a searcher so that trials launch in low-carbon windows, within a deadline.

    Constructor::

        CarbonGate(
            inner,                      # the Searcher to delegate to (e.g. a BudgetGate)
            provider,                   # IntensityProvider; its forecast(now, deadline) is planned on
            deadline=aware_utc_datetime,  # absolute: the study must finish by then
            policy=SchedulePolicy("flexible-start"),  # or threshold / none; min_saving margin
            work=lambda: remaining_work(durations, trials_left, concurrency),  # or None: unknown
            assumed_work=timedelta(hours=1),  # planned with while ``work`` answers None
            assumed_basis="12 h expected: budget ...",  # how it was found, for the plan's reason
            clock=utc_now,              # injectable: returns an aware UTC datetime
            replan_every=timedelta(minutes=15),  # re-query the provider at most this often
            notify=None,                # or a callable taking console lines (the study prints them)
            notify_every=timedelta(seconds=60),  # a progress line this often while waiting
            guard=None,                 # or a WaitGuard: re-checks a wait under way (tuner.carbon.guard)
        )

    For a provider without a forecast API, pass ``HistoryForecast(provider)`` and
    ``SchedulePolicy(confidence=HISTORY_CONFIDENCE)`` (see :mod:`tuner.carbon.forecast`):
    each plan then waits only for a saving that clears the forecast's own past error at
    that lead time, and each re-plan while waiting launches as soon as none does.
    A provider that raises never stops the study: the gate logs a warning and launches.
    ``waits`` (and ``waited_s``, ``report()``) record how long it held back and why.
    ``notify`` hears a line when a wait starts (its reason and planned length), one every
    ``notify_every`` while it lasts, and one when launches go on.
    """

    def __init__(
        self,
        inner: Searcher,
        provider: IntensityProvider,
        *,
        deadline: datetime,
        policy: SchedulePolicy | None = None,
        work: Callable[[], timedelta | None] = lambda: None,
        assumed_work: timedelta = timedelta(hours=1),
        assumed_basis: str | None = None,
        clock: Clock = utc_now,
        replan_every: timedelta = timedelta(minutes=15),
        notify: Callable[[str], None] | None = None,
        notify_every: timedelta = timedelta(seconds=60),
        guard: WaitGuard | None = None,
    ) -> None:
        super().__init__(metric=None, mode=None)
        if deadline.tzinfo is None:
            raise ValueError(f"carbon.deadline must be timezone-aware (UTC), got naive {deadline}")
        if assumed_work < timedelta(0):
            raise ValueError(f"carbon.assumed_work must be >= 0, got {assumed_work}")
        if replan_every <= timedelta(0):
            raise ValueError(f"carbon.replan_every must be > 0, got {replan_every}")
        self.inner = inner
        self.provider = provider
        self.deadline = deadline
        self.policy = policy or SchedulePolicy()
        self.work = work
        self.assumed_work = assumed_work
        self.assumed_basis = assumed_basis or f"{_h(assumed_work)} h assumed"
        self.work_basis: str | None = None  # what the latest plan's work came from
        self.clock = clock
        self.replan_every = replan_every
        self.notify = notify
        self.notify_every = notify_every
        self._said_at: datetime | None = None
        self.plan: StartPlan | None = None
        self.planned_at: datetime | None = None
        self.plans = 0
        self.waits: list[Wait] = []
        self.released_reason: str | None = None  # set once the deadline ended all waiting
        self._waiting_since: datetime | None = None
        self._wait_reason = ""  # the plan that started the current wait
        self.guard = guard
        self._forecast: pd.Series | None = None  # what the latest plan was made on
        self._wait_forecast: pd.Series | None = None  # ... and the plan that started the wait
        self._wait_target = math.nan

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the Tuner's searcher for ``Tuner.restore``; greentune resumes from its
        own ledger, so the live provider (an HTTP session) and callables stay behind."""
        return {k: (None if k in ("provider", "work", "clock", "notify") else v) for k, v in self.__dict__.items()}

    # ------------------------------------------------------------------ the decision

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        now = self.clock()
        if self.policy.kind != "none" and not self._may_launch(now):
            if self._waiting_since is None:
                self._waiting_since, self._wait_reason = now, self.plan.reason
                self._wait_forecast, self._wait_target = self._forecast, self.plan.expected_g_per_kwh
                self._say(now, f"holding trial launches for {duration_text(self._left(now))} "
                               f"(until {self.plan.start:%H:%M} UTC): {self.plan.reason}")
            elif self._said_at is not None and now - self._said_at >= self.notify_every:
                self._say(now, f"launches held for {duration_text((now - self._waiting_since).total_seconds())} "
                               f"so far, {duration_text(self._left(now))} to go (until {self.plan.start:%H:%M} UTC)")
            return None
        if self._waiting_since is not None:
            self._say(now, "launching trials after a "
                           f"{duration_text((now - self._waiting_since).total_seconds())} wait")
        self._end_wait(now)
        return self.inner.suggest(trial_id)

    def _left(self, now: datetime) -> float:
        return max((self.plan.start - now).total_seconds(), 0.0) if self.plan else 0.0

    def _say(self, now: datetime, text: str) -> None:
        self._said_at = now
        if self.notify is not None:
            self.notify(f"[greentune] carbon: {text}")

    def _may_launch(self, now: datetime) -> bool:
        if self.released_reason is not None:
            return True
        estimate = self.work()
        if estimate is None:
            work, self.work_basis = self.assumed_work, self.assumed_basis
        else:
            work, self.work_basis = estimate, f"{_h(estimate)} h measured on finished trials"
        if now >= self.deadline - work:
            reason = (f"deadline near: {_h(work)} h of work left ({self.work_basis}) and "
                      f"{_h(self.deadline - now)} h to the deadline, so launches do not wait")
            if estimate is None:
                # an estimate made before any trial finished may be far too long: launch,
                # but plan again once a finished trial measures the real work
                self.plan = StartPlan(now, math.nan, math.nan, 0.0, reason)
                return True
            self.released_reason = reason
            self._say(now, reason)
            return True
        if self.planned_at is None or now - self.planned_at >= self.replan_every:
            self.plan = self._plan(now, work)
            self.planned_at = now
            self.plans += 1
        return self.plan.start <= now

    def _plan(self, now: datetime, work: timedelta) -> StartPlan:
        try:
            forecast = self.provider.forecast(now, self.deadline)
            # The margin guards leaving run-now on an uncertain forecast. Once the gate is
            # already waiting, launching now is just one more window, so the lowest wins
            # (measured on the 2020 traces: re-planning with the margin launched too early).
            policy = self.policy
            if self._waiting_since is not None:
                policy = replace(policy, min_saving=0.0)
            # Risk-aware waiting: a wait begins only for a saving that clears the forecast's
            # past error at ``confidence``; every re-plan while waiting is a re-check that
            # launches as soon as waiting no longer pays *as expected* (the median error):
            # re-asking for the same confidence from each new present bailed out of good
            # waits at random hours (FR 09:00 1 h: 4.1 % saved against 6.9 % planned once).
            risk = None
            saving_risk = getattr(self.provider, "saving_risk", None)
            if policy.kind == "flexible-start" and policy.confidence is not None and saving_risk:
                confidence = policy.confidence
                if self._waiting_since is not None:
                    confidence = min(confidence, WAITING_CONFIDENCE)
                    policy = replace(policy, confidence=confidence)
                risk = saving_risk(now, self.deadline, work, confidence)
            plan = plan_start(forecast, now, work, self.deadline, policy, risk)
            self._forecast = forecast.values
            if self._waiting_since is not None and plan.start > now and self.guard is not None:
                plan = self._recheck(now, plan)
            return replace(plan, reason=f"{plan.reason} [work: {self.work_basis}]")
        except Exception as exc:  # a study never stops because a carbon source failed
            logger.warning("carbon: no plan from %s (%s: %s); launching without waiting",
                           getattr(self.provider, "name", self.provider), type(exc).__name__, exc)
            return StartPlan(now, math.nan, math.nan, 0.0,
                             f"start now: forecast unavailable ({type(exc).__name__})")

    def _recheck(self, now: datetime, plan: StartPlan) -> StartPlan:
        """The :class:`~tuner.carbon.guard.WaitGuard` checks on a wait under way that the
        re-plan would continue: they look at what happened since the wait began."""
        miss = None
        if self.guard.divergence is not None and self._wait_forecast is not None:
            try:
                observed = self.provider.history(self._waiting_since, now).values
                miss = forecast_miss(self._wait_forecast, observed, self._waiting_since, now)
            except Exception as exc:  # no history: this check is skipped, the wait goes on
                logger.debug("carbon: no history to re-check the wait (%s)", exc)
        reason = stop_reason(self.guard, target_g=self._wait_target,
                             now_g=plan.now_g_per_kwh, miss=miss)
        if reason is None:
            return plan
        return StartPlan(now, plan.now_g_per_kwh, plan.now_g_per_kwh, 0.0, reason)

    def _end_wait(self, now: datetime) -> None:
        if self._waiting_since is not None:
            self.waits.append(Wait(self._waiting_since, now, self._wait_reason))
            self._waiting_since = None

    # ------------------------------------------------------------------ reporting

    @property
    def finish_reason(self) -> str | None:
        """Why the inner searcher (e.g. a ``BudgetGate``) finished, if it says."""
        return getattr(self.inner, "finish_reason", None)

    @property
    def waited_s(self) -> float:
        """Seconds launches were held back, including a wait still under way."""
        ongoing = (self.clock() - self._waiting_since).total_seconds() if self._waiting_since else 0.0
        return sum(w.seconds for w in self.waits) + ongoing

    def report(self) -> dict[str, Any]:
        """Flat figures for MLflow and the study summary."""
        return {
            "carbon_policy": self.policy.kind,
            "carbon_waited_s": self.waited_s,
            "carbon_waits": len(self.waits),
            "carbon_plans": self.plans,
            "carbon_wait_reason": self.waits[0].reason if self.waits else None,
            "carbon_released": self.released_reason,
            "carbon_planned_saving": self.plan.saving_fraction if self.plan else None,
            "carbon_work_basis": self.work_basis,
        }

    # ------------------------------------------------------------------ delegation

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.inner.on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        self.inner.save(checkpoint_path)


def _h(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:.2f}".rstrip("0").rstrip(".")
