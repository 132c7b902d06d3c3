"""Pause running trials while the grid is dirty, and resume them from their checkpoints.

:class:`CarbonPauseScheduler` is a Ray Tune ``TrialScheduler``: on each result of a trial
that has saved a checkpoint (``tuner.report(checkpoint=...)``) it answers ``PAUSE``
while the intensity is above the threshold; Ray then stops the trial's process, and
:meth:`choose_trial_to_run` restarts it from that checkpoint once the intensity is back
under the threshold. Trials without a checkpoint are never paused: pausing them would
throw their work away. Launches of new trials are held by the ``threshold`` gate
(:class:`~tuner.carbon.gate.CarbonGate`), so the two agree on what "dirty" means.

The deadline wins: once what is left of the study (``work()``, plus one trial for the
paused ones) no longer fits before the deadline, nothing is paused and every paused
trial may run. A provider that fails never pauses anything.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from tuner.carbon.base import IntensityProvider
from tuner.carbon.gate import Clock, utc_now
from tuner.result import duration_text
from tuner.study.record import TrialReport, TrialStatus

if TYPE_CHECKING:
    from tuner.study.ledger import EnergyLedger

logger = logging.getLogger(__name__)
_LIVE = frozenset({"provider", "ledger", "work", "clock", "notify"})


class CarbonPauseScheduler(FIFOScheduler):
    """Ray Tune scheduler for the ``pause-resume`` carbon policy (see the module docstring).

    ``level_g_per_kwh`` is the threshold, or ``percentile`` of the forecast up to the
    deadline sets it (re-read every ``replan_every``). ``work`` estimates the wall time
    the study still needs (``None``: unknown, ``assumed_work`` is used). ``notify`` hears a
    line when a trial is paused (the intensity and the level), one every ``notify_every``
    while trials stay paused, and one when a trial resumes.
    """

    def __init__(
        self,
        provider: IntensityProvider,
        *,
        deadline: datetime,
        level_g_per_kwh: float | None = None,
        percentile: float | None = None,
        work: Callable[[], timedelta | None] = lambda: None,
        assumed_work: timedelta = timedelta(hours=1),
        clock: Clock = utc_now,
        replan_every: timedelta = timedelta(minutes=15),
        check_every: timedelta = timedelta(seconds=2),
        ledger: EnergyLedger | None = None,
        notify: Callable[[str], None] | None = None,
        notify_every: timedelta = timedelta(seconds=60),
    ) -> None:
        super().__init__()
        if (level_g_per_kwh is None) == (percentile is None):
            raise ValueError("pause-resume needs exactly one of threshold_g_per_kwh or threshold_percentile")
        if deadline.tzinfo is None:
            raise ValueError(f"carbon.deadline must be timezone-aware (UTC), got naive {deadline}")
        self.provider = provider
        self.deadline = deadline
        self.level_g_per_kwh = level_g_per_kwh
        self.percentile = percentile
        self.work = work
        self.assumed_work = assumed_work
        self.clock = clock
        self.replan_every = replan_every
        self.check_every = check_every  # Tune asks on every loop step; the answer holds this long
        self.ledger = ledger
        self._answer: tuple[datetime, bool] | None = None
        self.pauses: dict[str, int] = {}  # trial id -> times paused
        self.paused_since: dict[str, datetime] = {}
        self.paused_s = 0.0  # trial-seconds spent paused, finished pauses only
        self.released_reason: str | None = None
        self._level: float | None = level_g_per_kwh
        self._level_at: datetime | None = None
        self._reading: tuple[float, float] | None = None  # the last (intensity, level) read
        self.notify = notify
        self.notify_every = notify_every
        self._said_at: datetime | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the Tuner's scheduler for ``Tuner.restore``; greentune resumes from its
        own ledger instead, so the live parts (provider, ledger, callables) stay behind."""
        return {k: (None if k in _LIVE else v) for k, v in self.__dict__.items()}

    # ------------------------------------------------------------------ the decision

    def dirty(self, now: datetime | None = None) -> bool:
        """Whether running trials should be paused now."""
        now = now or self.clock()
        if self.released_reason is not None:
            return False
        if self._answer is None or now - self._answer[0] >= self.check_every:
            self._answer = (now, not self._released(now) and self._read_dirty(now))
        return self._answer[1]

    def _read_dirty(self, now: datetime) -> bool:
        try:
            intensity = self.provider.current().g_per_kwh
            level = self._threshold(now)
        except Exception as exc:  # noqa: BLE001 - a carbon source never stops or stalls a study
            logger.warning("carbon: no intensity from %s (%s: %s); not pausing",
                           getattr(self.provider, "name", self.provider), type(exc).__name__, exc)
            return False
        self._reading = (intensity, level)
        return math.isfinite(intensity) and intensity > level

    def _released(self, now: datetime) -> bool:
        estimate = self.work()
        left = (self.assumed_work if estimate is None else estimate) + self._one_trial()
        if now >= self.deadline - left:
            self.released_reason = (f"deadline near: {left.total_seconds() / 3600:.2f} h of work left, "
                                    "so trials are no longer paused")
            if self.pauses:  # only news to whoever saw trials paused
                self._say(now, self.released_reason)
            return True
        return False

    def _one_trial(self) -> timedelta:
        """Room for the paused trials to finish: the longest completed trial, or ``assumed_work``."""
        if self.ledger is None:
            return self.assumed_work
        durations = [float(r.info.get("duration_s") or 0.0) for r in self.ledger.completed()]
        return timedelta(seconds=max(durations)) if durations else self.assumed_work

    def _threshold(self, now: datetime) -> float:
        if self.level_g_per_kwh is not None:
            return self.level_g_per_kwh
        if self._level is None or self._level_at is None or now - self._level_at >= self.replan_every:
            series = self.provider.forecast(now, self.deadline)
            self._level = float(np.percentile(series.values.to_numpy(dtype=float), self.percentile))
            self._level_at = now
        return self._level

    # ------------------------------------------------------------------ Ray's hooks

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        report = TrialReport.from_result(result)
        if report.status is not TrialStatus.RUNNING or not report.checkpointed:
            return TrialScheduler.CONTINUE
        now = self.clock()
        if not self.dirty(now):
            return TrialScheduler.CONTINUE
        self.pauses[trial.trial_id] = self.pauses.get(trial.trial_id, 0) + 1
        self.paused_since[trial.trial_id] = now
        if self.ledger is not None:
            self.ledger.pause(trial.trial_id, self.pauses[trial.trial_id])
        logger.info("carbon: pausing trial %s (intensity above the threshold)", trial.trial_id)
        self._say(now, f"pausing trial {trial.trial_id} at its checkpoint: {self._intensity_text()}")
        return TrialScheduler.PAUSE

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """Paused trials first once the grid is clean (finish what was started), then new ones."""
        trials = tune_controller.get_trials()
        paused = [t for t in trials if t.status == Trial.PAUSED]
        if paused and not self.dirty():
            trial = paused[0]
            now = self.clock()
            since = self.paused_since.pop(trial.trial_id, None)
            if since is not None:
                self.paused_s += (now - since).total_seconds()
                if self.released_reason is not None:
                    why = "the deadline is near"
                elif self._reading is not None:
                    why = f"intensity {self._reading[0]:.0f} g/kWh"
                else:
                    why = "the grid is clean again"
                self._say(now, f"resuming trial {trial.trial_id} after "
                               f"{duration_text((now - since).total_seconds())} paused ({why})")
            if self.ledger is not None:
                self.ledger.unpause(trial.trial_id, self.pauses.get(trial.trial_id, 0))
            return trial
        if paused and self.paused_since:
            self._progress(len(paused))
        return next((t for t in trials if t.status == Trial.PENDING), None)

    # ------------------------------------------------------------------ the console

    def _progress(self, n_paused: int) -> None:
        now = self.clock()
        if self._said_at is None or now - self._said_at < self.notify_every:
            return
        longest = (now - min(self.paused_since.values())).total_seconds()
        level = f" under {self._reading[1]:.0f} g/kWh (now {self._reading[0]:.0f} g/kWh)" if self._reading else ""
        self._say(now, f"{n_paused} trial{'s' if n_paused != 1 else ''} paused, the longest for "
                       f"{duration_text(longest)} so far; waiting for intensity{level}")

    def _intensity_text(self) -> str:
        if self._reading is None:
            return "intensity above the threshold"
        intensity, level = self._reading
        return f"intensity {intensity:.0f} g/kWh is above {level:.0f} g/kWh"

    def _say(self, now: datetime, text: str) -> None:
        self._said_at = now
        if self.notify is not None:
            self.notify(f"[greentune] carbon: {text}")

    # ------------------------------------------------------------------ reporting

    def report(self) -> dict[str, Any]:
        """Flat figures for MLflow and the study summary."""
        ongoing = sum((self.clock() - t).total_seconds() for t in self.paused_since.values())
        return {
            "carbon_pauses": sum(self.pauses.values()),
            "carbon_paused_s": self.paused_s + ongoing,
            "carbon_pause_released": self.released_reason,
        }
