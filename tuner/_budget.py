"""The energy ledger and the two places it acts: starting trials and stopping them.

The ledger lives in the driver. It holds the last energy every trial reported (live
heartbeats while running, the final figure at the end) plus the driver's own CPU
energy, and answers two questions: may another trial start, and is the budget spent.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ray.tune import Stopper
from ray.tune.search import Searcher

from tuner.config import ENERGY_METRIC
from tuner.energy import J_PER_KWH

FINAL_STATUSES = ("completed", "failed")
INFO_PREFIXES = ("energy_", "hw_", "carbon_", "co2_")
INFO_KEYS = frozenset({"duration_s", "avg_power_w", "cpu_time_s", "greentune_epochs", "greentune_error", "node"})


def is_info_key(key: str) -> bool:
    """Fields that describe how a trial ran (energy provenance, hardware), not what it scored."""
    return key != ENERGY_METRIC and (key in INFO_KEYS or key.startswith(INFO_PREFIXES))


@dataclass
class TrialEntry:
    """One trial's row in the ledger; ``status`` is ``running`` until a final report."""

    trial_id: str
    params: dict[str, Any]
    status: str = "pending"
    energy_kwh: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    mlflow_run_id: str | None = None
    # when the trial process started (its first report minus Ray's time_total_s), and
    # (driver time, cumulative kWh) of every heartbeat: CO2 accounting needs *when* the
    # energy was spent, not only how much
    run_started_at: float | None = None
    energy_timeline: list[tuple[float, float]] = field(default_factory=list)
    timeline_iteration: int | None = None  # observe() sees each result twice; book it once
    # a trial paused and restarted (carbon pause-resume) runs in several processes, each
    # metering from zero: the energy of the earlier runs is carried in ``energy_base_kwh``
    segment: str | None = None
    energy_base_kwh: float = 0.0
    info_base: dict[str, float] = field(default_factory=dict)  # the same for additive info
    segments: int = 0

    @property
    def final(self) -> bool:
        return self.status not in ("pending", "running", "paused")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialEntry:
        names = {f.name for f in dataclasses.fields(cls)}
        entry = cls(**{k: v for k, v in data.items() if k in names})
        entry.energy_timeline = [(float(t), float(e)) for t, e in entry.energy_timeline]
        return entry


class EnergyLedger:
    """Energy spent by a study: every trial's last report plus the driver's overhead."""

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
        self.entries: dict[str, TrialEntry] = {}
        self._overhead_cpu_s = overhead_cpu_s
        self._next_step_cpu_s = next_step_cpu_s
        self.stopped_at: float | None = None

    # ------------------------------------------------------------------ updates

    def start(self, trial_id: str, params: dict[str, Any]) -> None:
        """A trial was suggested; it counts as pending until its first report."""
        self.entries.setdefault(trial_id, TrialEntry(trial_id, dict(params)))

    def observe(self, trial_id: str, result: dict[str, Any]) -> TrialEntry:
        """Take a trial's result (heartbeat or final). Idempotent for the same result."""
        entry = self.entries.setdefault(trial_id, TrialEntry(trial_id, dict(result.get("config", {}))))
        if entry.final:
            return entry
        energy = result.get(ENERGY_METRIC)
        now = time.time()
        if entry.run_started_at is None:
            entry.run_started_at = now - float(result.get("time_total_s") or 0.0)
        segment = result.get("greentune_segment")
        if segment is not None and segment != entry.segment:
            if entry.segment is not None:  # restarted after a pause: keep what the last run spent
                entry.energy_base_kwh = entry.energy_kwh
                # nothing was spent while paused: the restarted run's energy starts from here
                entry.energy_timeline.append((now - float(result.get("time_this_iter_s") or 0.0),
                                              entry.energy_kwh))
                entry.info_base = {k: float(v) for k, v in entry.info.items() if _additive(k, v)}
            entry.segment = segment
            entry.segments += 1
        if isinstance(energy, (int, float)) and math.isfinite(energy) and energy >= 0:
            energy = entry.energy_base_kwh + float(energy)
            # a live reading never lowers what was counted; a final figure (maybe the
            # objective's own) replaces it
            final = result.get("greentune_status") in FINAL_STATUSES
            entry.energy_kwh = energy if final else max(entry.energy_kwh, energy)
            iteration = result.get("training_iteration")
            fresh = iteration is None or iteration != entry.timeline_iteration
            if fresh and result.get("greentune_status", "running") == "running":
                entry.energy_timeline.append((now, float(energy)))
                entry.timeline_iteration = iteration
        entry.info.update({k: v + entry.info_base.get(k, 0.0) if _additive(k, v) else v
                           for k, v in result.items() if is_info_key(k)})
        status = result.get("greentune_status", "running")
        if self.metric in result:
            entry.metrics[self.metric] = float(result[self.metric])
        if not (entry.status == "paused" and status == "running"):  # a pause booked by the scheduler holds
            entry.status = status
        if status in FINAL_STATUSES:
            entry.ended_at = now
            entry.metrics.update(_numeric_metrics(result))
        return entry

    def fail(self, trial_id: str, error: str) -> TrialEntry:
        """A trial that died without a final report: its last live energy stays counted."""
        entry = self.entries.setdefault(trial_id, TrialEntry(trial_id, {}))
        if not entry.final:
            entry.status = "failed"
            entry.info["greentune_error"] = error
            entry.ended_at = time.time()
        return entry

    def stop(self, trial_id: str) -> TrialEntry | None:
        """Ray stopped this trial before its final report (budget or early stopping):
        close it now, so that its row and MLflow run are written at once. Its energy stays."""
        entry = self.entries.get(trial_id)
        if entry is not None and not entry.final:
            entry.status = "stopped_by_budget" if self.stopped_at else "stopped"
            entry.ended_at = time.time()
            return entry
        return None

    def close_unfinished(self) -> list[TrialEntry]:
        """Mark trials Ray stopped before their final report; their energy stays counted."""
        return [e for e in (self.stop(t) for t in list(self.entries)) if e is not None]

    def interrupt_unfinished(self, reason: str) -> list[TrialEntry]:
        """Close trials an earlier driver left running when it died: ``interrupted``.

        Their energy up to the last heartbeat that reached the ledger on disk stays
        counted, once; whatever they spent after it was never reported and is not.
        """
        closed = []
        for entry in self.entries.values():
            if not entry.final:
                entry.status = "interrupted"
                entry.info["greentune_error"] = reason
                entry.ended_at = entry.energy_timeline[-1][0] if entry.energy_timeline else entry.started_at
                closed.append(entry)
        return closed

    def to_json(self) -> dict[str, Any]:
        """Everything needed to resume: every trial's row and the overhead so far."""
        return {
            "budget_kwh": self.budget_kwh,
            "overhead_kwh": self.overhead_kwh,
            "trials_kwh": self.trials_kwh,
            "stopped_at": self.stopped_at,
            "entries": [e.to_json() for e in self.entries.values()],
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Take the books of an earlier driver of the same study (see :meth:`to_json`)."""
        self.entries = {e["trial_id"]: TrialEntry.from_json(e) for e in data.get("entries", [])}
        self.carried_overhead_kwh = float(data.get("overhead_kwh") or 0.0)
        self.stopped_at = data.get("stopped_at")  # a budget stop that had fired stays fired

    # ------------------------------------------------------------------ questions

    @property
    def trials_kwh(self) -> float:
        return sum(e.energy_kwh for e in self.entries.values())

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
        """Total after one more report interval of every running trial at its mean power."""
        watts = sum(float(e.info.get("avg_power_w") or 0.0) for e in self.running())
        return self.total_kwh + watts * self.report_interval_s / J_PER_KWH

    def should_stop(self) -> bool:
        """Stop before the next heartbeat would carry the total past the budget.

        Waiting for the total itself to cross would overshoot by up to one report
        interval of every running trial; projecting one interval ahead keeps the
        recorded total at or just under the budget.
        """
        if self.stopped_at is None and self.projected_kwh >= self.budget_kwh:
            self.stopped_at = time.time()
        return self.stopped_at is not None

    @property
    def expected_trial_kwh(self) -> float | None:
        """Median energy of completed trials; ``None`` until one completes."""
        done = [e.energy_kwh for e in self.entries.values() if e.status == "completed"]
        return statistics.median(done) if done else None

    def running(self) -> list[TrialEntry]:
        return [e for e in self.entries.values() if not e.final]

    def can_start_trial(self) -> bool:
        """Whether one more trial of the expected energy fits in what is left.

        Running trials are charged at least the expected energy, since they will most
        likely spend that much before they finish; choosing the trial is charged what the
        searcher's last step cost, since a BO step can cost more than a small trial.
        """
        if self.exhausted or self.stopped_at is not None:
            return False
        choosing = self._next_step_cpu_s() * self.watts_per_core / J_PER_KWH
        expected = self.expected_trial_kwh
        if expected is None:
            return self.total_kwh + choosing < self.budget_kwh
        committed = sum(
            e.energy_kwh if e.final else max(e.energy_kwh, expected) for e in self.entries.values()
        )
        return committed + self.overhead_kwh + choosing + expected <= self.budget_kwh

    @property
    def n_trials(self) -> int:
        """Trials that count towards ``max_trials``: all but those a dead driver interrupted
        (they run again, so that the cap buys the trials it promises)."""
        return sum(e.status != "interrupted" for e in self.entries.values())

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for entry in self.entries.values():
            out[entry.status] = out.get(entry.status, 0) + 1
        return out


def _additive(key: str, value: Any) -> bool:
    """Info that adds up over the runs of a paused and restarted trial (energy parts, CPU time)."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return numeric and (key in ("cpu_time_s", "duration_s") or (key.startswith("energy_") and key.endswith("_kwh")))


def _numeric_metrics(result: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in result.items():
        if key == ENERGY_METRIC or is_info_key(key) or key.startswith(("greentune_", "time_", "config")) or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and key not in _RAY_RESULT_KEYS:
            out[key] = float(value)
    return out


_RAY_RESULT_KEYS = frozenset(
    {"timestamp", "training_iteration", "pid", "done", "iterations_since_restore", "time_total_s",
     "time_this_iter_s", "time_since_restore", "checkpoint_dir_name"}
)


class BudgetGate(Searcher):
    """Wraps a searcher so that no trial starts unless its expected energy fits.

    While trials are still running, the answer is "wait" (``None``): one of them may
    finish under its expected energy and leave room. With nothing running and no room,
    the search is ``FINISHED``.
    """

    def __init__(self, inner: Searcher, ledger: EnergyLedger, max_trials: int | None) -> None:
        # No metric towards Ray: heartbeats carry energy only, and Ray would reject them.
        super().__init__(metric=None, mode=None)
        self.inner = inner
        self.ledger = ledger
        self.max_trials = max_trials
        self.finish_reason: str | None = None

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.max_trials is not None and self.ledger.n_trials >= self.max_trials:
            return self._finish("max_trials reached")
        if not self.ledger.can_start_trial():
            if self.ledger.running():
                return None
            return self._finish("energy budget cannot fit another trial")
        params = self.inner.suggest(trial_id)
        if params == Searcher.FINISHED:
            return self._finish("search space exhausted")
        if isinstance(params, dict):
            self.ledger.start(trial_id, params)
        return params

    def _finish(self, reason: str) -> str:
        self.finish_reason = self.finish_reason or reason
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.inner.on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        self.inner.save(checkpoint_path)


class BudgetStopper(Stopper):
    """Stops every running trial once the ledger (projected one interval ahead) reaches the budget."""

    def __init__(self, ledger: EnergyLedger) -> None:
        self.ledger = ledger

    def __call__(self, trial_id: str, result: dict) -> bool:
        self.ledger.observe(trial_id, result)
        return self.ledger.should_stop()

    def stop_all(self) -> bool:
        return self.ledger.should_stop()
