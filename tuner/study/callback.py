"""The driver-side Ray Tune callback: books each trial, logs it to MLflow, shows progress.

Every change to a trial's record goes through the ledger; this callback reads the
record back and hands it to tracking and the study's files. A trial's MLflow child run
opens when Ray starts the trial and gets each report and heartbeat as it arrives, so
MLflow shows a study while it runs, not only once each trial is over.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from tuner.redact import redact
from tuner.study.ledger import EnergyLedger
from tuner.study.record import UNDERREPORTED_SOURCE, TrialRecord, TrialReport, TrialStatus
from tuner.tracking import QueuedTracker
from tuner.tracking.mlflow import MetricPoint, energy_points

if TYPE_CHECKING:
    from tuner.carbon.accounting import CarbonAccountant

logger = logging.getLogger("tuner")


@dataclass
class _ChildRun:
    """A trial's MLflow child run while the trial runs: every point so far, and how many
    of them MLflow has (the rest go with the trial's final record)."""

    run_id: str = ""
    points: list[MetricPoint] = field(default_factory=list)
    logged: int = 0
    last_step: int = 0  # the newest report seen: Ray and the stopper may replay a result
    heartbeats: int = 0  # energy timeline points seen
    live: bool = True


class StudyCallback(Callback):
    """Turns Ray's trial events into ledger entries, MLflow child runs and progress lines."""

    def __init__(
        self,
        ledger: EnergyLedger,
        tracker: QueuedTracker,
        front_size: Callable[[], int],
        persist: Callable[[], None],
        progress_every_s: float | None = 10.0,
        carbon: CarbonAccountant | None = None,
        save_ledger: Callable[[], None] | None = None,
        save_every_s: float = 1.0,
    ) -> None:
        self.ledger = ledger
        # heartbeats reach disk too, so a dead driver's in-flight energy is not lost
        self.save_ledger = save_ledger
        self.save_every_s = save_every_s
        self._last_save = 0.0
        self._save_failed = False
        self.carbon = carbon
        self.tracker = tracker
        self.front_size = front_size
        self.persist = persist
        self.progress_every_s = progress_every_s
        self.runs: dict[str, _ChildRun] = {}
        self._last_progress = 0.0

    def __getstate__(self) -> dict[str, Any]:
        """What Ray pickles into ``tuner.pkl``: no MLflow client, carbon provider or config.

        Those hold credentials (a tracking URI with a password, API tokens), and so do the
        study's own methods passed in here; greentune never restores a study from Ray's
        pickle, it rebuilds them from its own state.
        """
        state = self.__dict__.copy()
        state.update(tracker=None, carbon=None, front_size=None, persist=None, save_ledger=None)
        return state

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id in self.runs:  # restarted after a carbon pause: the same child run goes on
            return
        record = self.ledger.get(trial.trial_id)
        params = record.params if record is not None else dict(getattr(trial, "config", {}) or {})
        self.runs[trial.trial_id] = _ChildRun(self.tracker.open_trial(trial.trial_id, params, time.time()))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        record = self.ledger.observe(trial.trial_id, result)
        self._log_live(record, TrialReport.from_result(result))
        now = time.monotonic()
        if self.save_ledger is not None and now - self._last_save >= self.save_every_s:
            self._last_save = now
            try:
                self.save_ledger()
                self._save_failed = False
            except OSError as exc:  # a full disk must not stop trials that are spending energy
                if not self._save_failed:
                    logger.error("%s; the study goes on, the ledger is kept in memory", exc)
                self._save_failed = True
        self._maybe_progress()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self.ledger.get(trial.trial_id)
        if record is not None and not record.final:
            record = self.ledger.stop(trial.trial_id)  # ended by a stopper, without a final report
        if record is not None and record.final:
            self.record(record)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = _error_text(trial)
        self.record(self.ledger.fail(trial.trial_id, redact(error)))

    def _log_live(self, record: TrialRecord, report: TrialReport) -> None:
        """Add the trial's new reports and heartbeats to its child run, each at its own step and time."""
        run = self.runs.setdefault(record.trial_id, _ChildRun())
        now = time.time()
        for item in report.history:
            if item.step > run.last_step:
                run.points.append((item.step, item.at or now, item.metrics))
                run.last_step = item.step
        run.points += energy_points(record, after=run.heartbeats)
        run.heartbeats = len(record.energy_timeline)
        if run.run_id and run.live and len(run.points) > run.logged:
            run.live = self.tracker.log_points(run.run_id, run.points[run.logged:])
            if run.live:
                run.logged = len(run.points)

    def record(self, record: TrialRecord) -> None:
        """Log a finished trial once and persist the table, so a crash loses nothing."""
        trial_id = record.trial_id
        record = self.ledger.get(trial_id) or record  # the latest version
        if record.mlflow_run_id is not None:
            return
        if self.carbon is not None and "co2_kg" not in record.info:
            try:
                record = self.ledger.add_info(trial_id, self.carbon.trial(record))
            except Exception as exc:  # noqa: BLE001 - CO2 accounting must not kill a study
                logger.warning("could not account CO2 for trial %s: %s", trial_id, exc)
        if record.info.get("energy_source") == UNDERREPORTED_SOURCE:  # said in the driver's log too
            logger.warning("trial %s reported %.3g kWh, far below the %.3g kWh measured for it; the measured energy "
                           "is booked", trial_id, float(record.info.get("energy_reported_kwh") or 0.0), record.energy_kwh)
        run = self.runs.pop(trial_id, None) or _ChildRun(points=energy_points(record))  # e.g. restored on resume
        try:
            run_id = self.tracker.log_trial(record, run.points, run.run_id, run.logged)
        except Exception as exc:  # noqa: BLE001 - tracking must not kill a study mid-budget
            logger.warning("could not log trial %s to MLflow: %s", trial_id, exc)
            run_id = ""
        self.ledger.book_run_id(trial_id, run_id)
        self._book_flushed_run_ids()
        try:
            self.persist()
        except OSError as exc:  # a full disk: the ledger in memory is intact; retried next trial
            logger.error("%s; the study goes on and retries after the next trial", exc)
        self._maybe_progress(force=True)

    def _book_flushed_run_ids(self) -> None:
        """Trials whose records waited for MLflow get their child run id once the queue flushes."""
        flushed = getattr(self.tracker, "flushed_run_ids", None) or {}
        for trial_id, run_id in flushed.items():
            record = self.ledger.get(trial_id)
            if record is not None and not record.mlflow_run_id:
                self.ledger.book_run_id(trial_id, run_id)

    def _maybe_progress(self, force: bool = False) -> None:
        if self.progress_every_s is None:
            return
        now = time.monotonic()
        if not force and now - self._last_progress < self.progress_every_s:
            return
        self._last_progress = now
        print(progress_line(self.ledger, self.front_size()), file=sys.stderr, flush=True)


def progress_line(ledger: EnergyLedger, front_size: int) -> str:
    counts = ledger.counts()
    done, running, queued, failed = (counts.get(status.value, 0) for status in (
        TrialStatus.COMPLETED, TrialStatus.RUNNING, TrialStatus.PENDING, TrialStatus.FAILED))
    share = 100 * ledger.total_kwh / ledger.budget_kwh
    return (
        f"[greentune] trials: {done} done, {running} running, {queued} queued, "
        f"{failed} failed | energy {ledger.total_kwh:.3g} / {ledger.budget_kwh:.3g} kWh "
        f"({share:.0f}%) | Pareto front: {front_size}"
    )


def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None) or getattr(trial, "pickled_error_file", None)
    try:
        if path and str(path).endswith(".txt"):
            with open(path) as handle:
                return handle.read()[-4000:]
    except OSError:
        pass
    return "trial process failed (see Ray logs)"
