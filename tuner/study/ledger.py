"""The study's ledger: the one owner of every trial's record, and of the energy totals.

The ledger lives in the driver. It holds each trial's :class:`TrialRecord` (live
heartbeats while it runs, the final figure at the end) plus the driver's own CPU
energy, and answers the budget's questions: may another trial start, is the budget
spent. Records are frozen; every change is a method here that books a new version,
so the searcher, the stoppers, the carbon scheduler and tracking all read one truth.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from tuner.energy import J_PER_KWH
from tuner.search.base import Outcome
from tuner.search.energy_model import EnergyPrediction
from tuner.study.record import TrialRecord, TrialReport, TrialStatus


class EnergyLedger:
    """Energy spent by a study: every trial's record plus the driver's overhead."""

    def __init__(
        self,
        budget_kwh: float,
        watts_per_core: float,
        metric: str,
        overhead_cpu_s: Callable[[], float] = lambda: 0.0,
        report_interval_s: float = 2.0,
        next_step_cpu_s: Callable[[], float] = lambda: 0.0,
        carried_overhead_kwh: float = 0.0,
    ) -> None:
        self.budget_kwh = budget_kwh
        # the overhead of earlier drivers of this study (a resumed study keeps its books)
        self.carried_overhead_kwh = carried_overhead_kwh
        self.report_interval_s = report_interval_s
        self.watts_per_core = watts_per_core
        self.metric = metric
        self._records: dict[str, TrialRecord] = {}
        self._overhead_cpu_s = overhead_cpu_s
        self._next_step_cpu_s = next_step_cpu_s
        self.stopped_at: float | None = None
        self.interrupted_by: str | None = None  # a signal asked the driver to end; the study stays resumable

    # ------------------------------------------------------------------ reading

    @property
    def records(self) -> Mapping[str, TrialRecord]:
        """Every trial's record by trial id, in the order the trials started (read-only)."""
        return MappingProxyType(self._records)

    def get(self, trial_id: str) -> TrialRecord | None:
        return self._records.get(trial_id)

    def __iter__(self) -> Iterator[TrialRecord]:
        return iter(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)

    def outcome(self, trial_id: str) -> Outcome:
        """What the optimiser learns from a finished trial: its metric and its energy total."""
        record = self._records.get(trial_id)
        if record is None or record.status is TrialStatus.FAILED:
            return Outcome("failed", error=None if record is None else record.error)
        if record.status is TrialStatus.COMPLETED and self.metric in record.metrics:
            value, energy = record.metrics[self.metric], record.energy_kwh
            if not (math.isfinite(value) and math.isfinite(energy)):  # never tell a model a NaN
                return Outcome("failed", error=f"metric '{self.metric}' or energy is not finite ({value}, {energy})")
            return Outcome("completed", value, energy)
        return Outcome("stopped")

    # ------------------------------------------------------------------ booking

    def _book(self, record: TrialRecord, **changes: Any) -> TrialRecord:
        record = dataclasses.replace(record, **changes)
        self._records[record.trial_id] = record
        return record

    def start(self, trial_id: str, params: dict[str, Any], prediction: EnergyPrediction | None = None) -> None:
        """A trial was admitted; it counts as pending until its first report.

        ``prediction`` is what the energy model said it would cost when the gate admitted
        it: the budget reserves its upper band for the trial while it runs, and the trials
        table keeps both figures (``energy_predicted_kwh``, ``energy_predicted_upper_kwh``)
        so that a trial dearer than predicted can be told apart.
        """
        if trial_id not in self._records:
            info = {} if prediction is None else {PREDICTED_KEY: prediction.kwh, PREDICTED_UPPER_KEY: prediction.upper_kwh}
            self._records[trial_id] = TrialRecord(trial_id, dict(params), info=info)

    def observe(self, trial_id: str, result: Mapping[str, Any], at: float | None = None) -> TrialRecord:
        """Take a trial's Ray result (heartbeat or final). Idempotent for the same result.

        ``at`` is when the result was sent, for one read back later (a trial's spooled
        last word, :mod:`tuner.study.spool`); by default, now.
        """
        record = self._records.get(trial_id) or TrialRecord(trial_id, dict(result.get("config", {})))
        if record.final:
            return record
        report = TrialReport.from_result(result)
        now = time.time() if at is None else at
        changes: dict[str, Any] = {}
        base_kwh, info_base = record.energy_base_kwh, record.info_base
        timeline = list(record.energy_timeline)
        if record.run_started_at is None:
            changes["run_started_at"] = now - report.time_total_s
        if report.segment is not None and report.segment != record.segment:
            if record.segment is not None:  # restarted after a pause: keep what the last run spent
                base_kwh = record.energy_kwh
                # nothing was spent while paused: the restarted run's energy starts from here
                timeline.append((now - report.time_this_iter_s, record.energy_kwh))
                info_base = {k: float(v) for k, v in record.info.items() if _additive(k, v)}
            changes.update(segment=report.segment, segments=record.segments + 1,
                           energy_base_kwh=base_kwh, info_base=info_base)
        if report.energy_kwh is not None:
            energy = base_kwh + report.energy_kwh
            # a live reading never lowers what was counted; a final figure (maybe the
            # objective's own) replaces it
            changes["energy_kwh"] = energy if report.final else max(record.energy_kwh, energy)
            fresh = report.iteration is None or report.iteration != record.timeline_iteration
            if fresh and report.status is TrialStatus.RUNNING:
                timeline.append((now, energy))
                changes["timeline_iteration"] = report.iteration
        changes["energy_timeline"] = tuple(timeline)
        changes["info"] = {**record.info, **{k: v + info_base.get(k, 0.0) if _additive(k, v) else v
                                             for k, v in report.info.items()}}
        # Every metric as last reported, heartbeats included: a trial that early stopping
        # or the budget ends never sends a final report, and its row must still show the
        # epoch (or step, or loss) it got to, as its MLflow history does.
        changes["metrics"] = {**record.metrics, **report.metrics}
        if report.final:
            changes.update(ended_at=now, error=report.error)
        if report.n_reports is not None:
            changes["n_reports"] = report.n_reports
        if not (record.status is TrialStatus.PAUSED and report.status is TrialStatus.RUNNING):
            changes["status"] = report.status  # a pause booked by the scheduler holds
        return self._book(record, **changes)

    def fail(self, trial_id: str, error: str) -> TrialRecord:
        """A trial that died without a final report: its last live energy stays counted."""
        record = self._records.get(trial_id) or TrialRecord(trial_id, {})
        if record.final:
            return record
        return self._book(record, status=TrialStatus.FAILED, error=error, ended_at=time.time())

    def stop(self, trial_id: str) -> TrialRecord | None:
        """Ray stopped this trial before its final report (budget or early stopping):
        close it now, so that its row and MLflow run are written at once. Its energy stays."""
        record = self._records.get(trial_id)
        if record is None or record.final:
            return None
        if self.interrupted_by:
            return self._book(record, status=TrialStatus.INTERRUPTED, ended_at=time.time(),
                              error=f"interrupted: the study was stopped by {self.interrupted_by} while this trial "
                                    "ran; its energy is counted and a resumed study runs another trial")
        if self.stopped_at:
            return self._book(record, status=TrialStatus.STOPPED_BY_BUDGET, ended_at=time.time(),
                              stop_reason=record.stop_reason or "the study's energy budget was spent")
        return self._book(record, status=TrialStatus.STOPPED, ended_at=time.time())

    def interrupt(self, signal_name: str) -> None:
        """A signal (Ctrl-C, SIGTERM) asked the study to end: start no trial, stop the running
        ones as ``interrupted`` (a resumed study runs others in their place)."""
        self.interrupted_by = self.interrupted_by or signal_name

    def stopping(self, trial_id: str, reason: str) -> None:
        """A stopper gave up on this running trial, for ``reason``; it is closed by
        :meth:`stop` once Ray has ended it, with the energy it spent until then."""
        record = self._records.get(trial_id)
        if record is not None and not record.final:
            self._book(record, stop_reason=reason)

    def pause(self, trial_id: str, pauses: int) -> None:
        """The carbon scheduler paused this running trial (its ``pauses``-th pause)."""
        self._set_pause_state(trial_id, TrialStatus.PAUSED, pauses)

    def unpause(self, trial_id: str, pauses: int) -> None:
        """The carbon scheduler let a paused trial run again from its checkpoint."""
        self._set_pause_state(trial_id, TrialStatus.RUNNING, pauses)

    def _set_pause_state(self, trial_id: str, status: TrialStatus, pauses: int) -> None:
        record = self._records.get(trial_id)
        if record is not None and not record.final:
            self._book(record, status=status, info={**record.info, "carbon_pauses": pauses})

    def add_info(self, trial_id: str, info: Mapping[str, Any]) -> TrialRecord:
        """Figures worked out in the driver after the trial ended (its CO2)."""
        record = self._records[trial_id]
        return self._book(record, info={**record.info, **info})

    def book_run_id(self, trial_id: str, run_id: str) -> TrialRecord:
        """The trial's MLflow child run (``""``: its record waits in the outage queue)."""
        return self._book(self._records[trial_id], mlflow_run_id=run_id)

    def close_unfinished(self) -> list[TrialRecord]:
        """Mark trials Ray stopped before their final report; their energy stays counted."""
        return [r for r in (self.stop(t) for t in list(self._records)) if r is not None]

    def interrupt_unfinished(self, reason: str) -> list[TrialRecord]:
        """Close trials an earlier driver left running when it died: ``interrupted``.

        Their energy up to the last heartbeat that reached the ledger on disk stays
        counted, once; whatever they spent after it was never reported and is not.
        """
        closed = []
        for record in list(self._records.values()):
            if not record.final:
                ended = record.energy_timeline[-1][0] if record.energy_timeline else record.started_at
                closed.append(self._book(record, status=TrialStatus.INTERRUPTED, error=reason, ended_at=ended))
        return closed

    def to_json(self) -> dict[str, Any]:
        """Everything needed to resume: every trial's record and the overhead so far."""
        return {
            "budget_kwh": self.budget_kwh,
            "overhead_kwh": self.overhead_kwh,
            "trials_kwh": self.trials_kwh,
            "stopped_at": self.stopped_at,
            "entries": [r.to_json() for r in self._records.values()],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take the books of an earlier driver of the same study (see :meth:`to_json`)."""
        self._records = {e["trial_id"]: TrialRecord.from_json(e) for e in data.get("entries", [])}
        self.carried_overhead_kwh = float(data.get("overhead_kwh") or 0.0)
        self.stopped_at = data.get("stopped_at")  # a budget stop that had fired stays fired

    # ------------------------------------------------------------------ the budget

    @property
    def trials_kwh(self) -> float:
        return sum(r.energy_kwh for r in self._records.values())

    @property
    def overhead_kwh(self) -> float:
        """The tuner's own energy: driver CPU time spent choosing trials (Ax fit and generation)."""
        return self.carried_overhead_kwh + self._overhead_cpu_s() * self.watts_per_core / J_PER_KWH

    @property
    def total_kwh(self) -> float:
        return self.trials_kwh + self.overhead_kwh

    @property
    def exhausted(self) -> bool:
        return self.total_kwh >= self.budget_kwh

    @property
    def projected_kwh(self) -> float:
        """Total at the next report interval: every running trial one interval further at its
        mean power, except that a trial admitted on a prediction is expected to end by its
        upper band, so it is projected no further than that while it is below it."""
        ahead = 0.0
        for record in self.running():
            power = record.info.get("avg_power_w")
            step = float(power) * self.report_interval_s / J_PER_KWH if _finite_number(power) else 0.0
            upper = record.info.get(PREDICTED_UPPER_KEY)
            if _finite_number(upper) and record.energy_kwh <= upper:
                step = min(step, float(upper) - record.energy_kwh)
            ahead += max(step, 0.0)
        return self.total_kwh + ahead

    def should_stop(self) -> bool:
        """Stop every running trial when the projection (:attr:`projected_kwh`) reaches the budget.

        Waiting for the total itself to cross would overshoot by up to one report interval
        of every running trial. Projecting every trial a whole interval ahead, though,
        stopped trials that were about to finish under the budget: a lone trial at 80.6 %
        whose next interval would have crossed, but which would have ended at 86 %. A
        stopped trial's energy is spent and its result lost, so a trial the gate admitted
        on its predicted upper band, which the budget has room for, is projected to that
        band and runs on; past it, the prediction was wrong and the interval rule holds.
        """
        if self.stopped_at is None and self.projected_kwh >= self.budget_kwh:
            self.stopped_at = time.time()
        return self.stopped_at is not None

    @property
    def expected_trial_kwh(self) -> float | None:
        """Median energy of completed trials; ``None`` until one completes."""
        done = [r.energy_kwh for r in self.completed()]
        return statistics.median(done) if done else None

    def completed(self) -> list[TrialRecord]:
        return [r for r in self._records.values() if r.status is TrialStatus.COMPLETED]

    def running(self) -> list[TrialRecord]:
        return [r for r in self._records.values() if not r.final]

    def failure_streak(self, since: float | None = None) -> list[TrialRecord]:
        """The trials that failed, in the order they ended, since the last finished trial that
        did not fail (or since ``since``, a time.time()): what ``max_consecutive_failures``
        counts. Interrupted trials (a dead driver's) neither count nor break the streak."""
        ended = sorted((r for r in self._records.values() if r.final and r.status is not TrialStatus.INTERRUPTED
                        and (since is None or (r.ended_at or 0.0) >= since)),
                       key=lambda r: r.ended_at or 0.0)
        streak: list[TrialRecord] = []
        for record in reversed(ended):
            if record.status is not TrialStatus.FAILED:
                break
            streak.append(record)
        return streak[::-1]

    def reserved_kwh(self, record: TrialRecord) -> float:
        """What a trial is charged while it runs: at least its predicted upper band (or,
        admitted before the energy model could predict, the median completed trial), since
        it will most likely spend that before it finishes; a finished trial, what it spent."""
        if record.final:
            return record.energy_kwh
        upper = record.info.get(PREDICTED_UPPER_KEY)
        if _finite_number(upper):
            return max(record.energy_kwh, float(upper))
        expected = self.expected_trial_kwh
        return record.energy_kwh if expected is None else max(record.energy_kwh, expected)

    def room_kwh(self) -> float:
        """What is left for one more trial: the budget, less every trial's charge
        (:meth:`reserved_kwh`), the overhead so far, and what choosing the trial will cost
        (the searcher's last step, since a BO step can cost more than a small trial)."""
        choosing = self._next_step_cpu_s() * self.watts_per_core / J_PER_KWH
        committed = sum(self.reserved_kwh(r) for r in self._records.values())
        return self.budget_kwh - committed - self.overhead_kwh - choosing

    def can_start_trial(self, prediction: EnergyPrediction | None = None) -> bool:
        """Whether one more trial fits in what is left (:meth:`room_kwh`).

        With ``prediction`` (the energy model's figures for the configuration proposed),
        its upper band must fit: admitting on the median of past trials let a trial that
        cost 12.45 kWh start with 6.63 kWh left. Without one (the model has too few
        completed trials yet), the median completed trial must fit, and before any trial
        completed, anything left will do: nothing is known to refuse on.
        """
        if self.exhausted or self.stopped_at is not None or self.interrupted_by is not None:
            return False
        room = self.room_kwh()
        if prediction is not None:
            return prediction.upper_kwh <= room
        expected = self.expected_trial_kwh
        return room > 0 if expected is None else expected <= room

    @property
    def n_trials(self) -> int:
        """Trials that count towards ``max_trials``: all but those a dead driver interrupted
        (they run again, so that the cap buys the trials it promises)."""
        return sum(r.status is not TrialStatus.INTERRUPTED for r in self._records.values())

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for record in self._records.values():
            out[record.status.value] = out.get(record.status.value, 0) + 1
        return out


PREDICTED_KEY = "energy_predicted_kwh"
"""A trial's info: the energy model's median for it when the gate admitted it."""
PREDICTED_UPPER_KEY = "energy_predicted_upper_kwh"
"""A trial's info: the upper band the budget reserved for it while it ran."""


def _additive(key: str, value: Any) -> bool:
    """Info that adds up over the runs of a paused and restarted trial (energy parts, CPU time)."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key in (PREDICTED_KEY, PREDICTED_UPPER_KEY):
        return False  # one figure for the whole trial, however many runs it took
    return numeric and (key in ("cpu_time_s", "duration_s") or (key.startswith("energy_") and key.endswith("_kwh")))


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
