"""A trial's one record, and what a trial process sends the driver (a Ray result).

A trial's story passes through three shapes and no more: the worker's energy window
(:class:`~tuner.energy.Measurement`), the Ray result it reports (built by
:func:`running_result` and :func:`final_result`, read back by :meth:`TrialReport.from_result`),
and the :class:`TrialRecord` the study's ledger keeps. Everything downstream (the
searcher, the stoppers, the carbon scheduler, MLflow, ``trials.csv``) reads records.

This module is imported in every trial process: standard library only.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENERGY_METRIC = "energy_kwh"
"""The second objective of every study, always minimised."""

REPORTED_SOURCE = "reported"
"""``energy_source`` of a trial whose objective returned its own ``energy_kwh``."""

UNDERREPORTED_SOURCE = "measured-over-reported"
"""``energy_source`` of a trial whose objective reported an ``energy_kwh`` far below what
its window measured (see ``tuner.trial.REPORTED_ENERGY_FLOOR``): the measurement is booked,
the report kept in ``energy_reported_kwh``."""

# The keys greentune adds to a trial's Ray result, beside the objective's metrics.
STATUS_KEY = "greentune_status"
REPORTS_KEY = "greentune_epochs"  # how many tuner.report() calls so far
HISTORY_KEY = "greentune_reports"  # JSON list of (report number, metrics, unix time) not yet sent
SEGMENT_KEY = "greentune_segment"  # one id per process run of the trial (pause-resume)
CHECKPOINTED_KEY = "greentune_checkpointed"
ERROR_KEY = "greentune_error"

# Result fields that say how a trial ran (energy provenance, hardware), not what it scored.
INFO_PREFIXES = ("energy_", "hw_", "carbon_", "co2_")
INFO_KEYS = frozenset({"duration_s", "avg_power_w", "cpu_time_s", "node"})
# Ray Tune's own result fields.
RAY_RESULT_KEYS = frozenset({
    "timestamp", "training_iteration", "pid", "done", "iterations_since_restore", "time_total_s",
    "time_this_iter_s", "time_since_restore", "checkpoint_dir_name", "date", "hostname", "node_ip",
    "config", "trial_id", "experiment_tag",
})
# Names a parameter or metric may not take: they are trials.csv's and MLflow's own.
RESERVED_PREFIXES = (*INFO_PREFIXES, "greentune_")
RESERVED_NAMES = frozenset({ENERGY_METRIC, *INFO_KEYS, "energy_source", "co2_kg", "status", "error",
                            "trial_id", "n_reports", "mlflow_run_id", "power_w", "stop_reason"})


# Prefixes the driver drops from an objective's numbers (Ray's ``time_*`` and ``config``).
_DROPPED_PREFIXES = ("greentune_", "time_", "config")


def is_reserved_result_key(key: str) -> bool:
    """Whether ``key`` is greentune's or Ray's own result field, which no objective metric may
    take (``energy_kwh`` included: an objective returning it goes through its own check).

    An objective returning such a key would overwrite the books: ``co2_kg: -1`` became the
    trial's CO2, a ``done`` would end the Ray trial; a metric named so would never be seen.
    """
    return (key in RESERVED_NAMES or key in RAY_RESULT_KEYS or key.startswith(RESERVED_PREFIXES)
            or key.startswith(_DROPPED_PREFIXES))


def is_info_key(key: str) -> bool:
    """Fields that describe how a trial ran (energy provenance, hardware), not what it scored."""
    return key != ENERGY_METRIC and (key in INFO_KEYS or key.startswith(INFO_PREFIXES))


class TrialStatus(str, enum.Enum):
    """Where a trial is. The value is what ``trials.csv``, ``ledger.json`` and MLflow show."""

    PENDING = "pending"  # proposed, no report yet
    RUNNING = "running"
    PAUSED = "paused"  # by the carbon pause-resume scheduler; resumes from its checkpoint
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"  # by early stopping, before its final report
    STOPPED_BY_BUDGET = "stopped_by_budget"
    INTERRUPTED = "interrupted"  # its driver died while it ran; the resumed study runs another

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        return self not in (TrialStatus.PENDING, TrialStatus.RUNNING, TrialStatus.PAUSED)


@dataclass(frozen=True)
class TrialRecord:
    """Everything the study knows about one trial. Only the ledger makes new versions.

    ``energy_kwh`` is the trial's one energy total: every run of a paused and restarted
    trial added up, or the objective's own figure when it reported one. ``info`` holds
    how it was measured (``energy_source``, energy parts, uncertainty, hardware, CO2).
    """

    trial_id: str
    params: dict[str, Any]
    status: TrialStatus = TrialStatus.PENDING
    energy_kwh: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    n_reports: int | None = None  # tuner.report() calls
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    mlflow_run_id: str | None = None
    stop_reason: str | None = None  # why a stopper ended it: the rule, the report, the figures
    # when the trial process started (its first report minus Ray's time_total_s), and
    # (driver time, cumulative kWh) of every heartbeat: CO2 accounting needs *when* the
    # energy was spent, not only how much
    run_started_at: float | None = None
    energy_timeline: tuple[tuple[float, float], ...] = ()
    timeline_iteration: int | None = None  # the same result reaches the ledger twice; book it once
    # a trial paused and restarted (carbon pause-resume) runs in several processes, each
    # metering from zero: the energy of the earlier runs is carried in ``energy_base_kwh``
    segment: str | None = None
    energy_base_kwh: float = 0.0
    info_base: dict[str, float] = field(default_factory=dict)  # the same for additive info
    segments: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", TrialStatus(self.status))  # "completed" reads as COMPLETED

    @property
    def final(self) -> bool:
        return self.status.final

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        data["energy_timeline"] = [list(point) for point in self.energy_timeline]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialRecord:
        """A record from ``ledger.json``, including those written before ``error`` and
        ``n_reports`` were fields of their own (they lived in ``info``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        info = dict(values.get("info") or {})
        values.setdefault("error", info.pop(ERROR_KEY, None))
        reports = info.pop(REPORTS_KEY, None)
        values.setdefault("n_reports", None if reports is None else int(reports))
        values["info"] = info
        values["status"] = TrialStatus(values.get("status", TrialStatus.PENDING))
        values["energy_timeline"] = tuple((float(t), float(e)) for t, e in values.get("energy_timeline") or ())
        return cls(**values)


@dataclass(frozen=True)
class Report:
    """One ``tuner.report()`` call: its number (1, 2, ...), its metrics and when it was made.

    MLflow draws each metric's history at these steps and times, so a curve shows the
    epochs as they ran, not the moment the driver heard of them.
    """

    step: int
    metrics: dict[str, float]
    at: float | None = None  # unix time in the trial process; None in records made before it was kept

    @classmethod
    def from_json(cls, item: Any) -> Report:
        """From ``[step, metrics]`` or ``[step, metrics, time]``."""
        step, metrics, *rest = item
        return cls(int(step), dict(metrics), float(rest[0]) if rest and rest[0] is not None else None)

    def to_json(self) -> list[Any]:
        return [self.step, self.metrics, self.at]


@dataclass(frozen=True)
class TrialReport:
    """One Ray result of a trial, read: a heartbeat (``RUNNING``) or its final report.

    ``energy_kwh`` is what this process run metered so far (or the objective's own
    figure in a final report); the ledger adds the runs of a restarted trial up.
    """

    status: TrialStatus
    energy_kwh: float | None
    metrics: dict[str, float]
    info: dict[str, Any]
    n_reports: int | None = None
    history: tuple[Report, ...] = ()
    segment: str | None = None
    checkpointed: bool = False
    error: str | None = None
    iteration: int | None = None
    time_total_s: float = 0.0
    time_this_iter_s: float = 0.0

    @property
    def final(self) -> bool:
        return self.status.final

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> TrialReport:
        energy = result.get(ENERGY_METRIC)
        usable = isinstance(energy, (int, float)) and not isinstance(energy, bool) and math.isfinite(energy) and energy >= 0
        reports = result.get(REPORTS_KEY)
        status, error = TrialStatus(result.get(STATUS_KEY) or TrialStatus.RUNNING), result.get(ERROR_KEY)
        if status is TrialStatus.COMPLETED and energy is not None and not usable:
            # a total the study cannot add up: the trial's result cannot be trusted either
            status, error = TrialStatus.FAILED, f"metric '{ENERGY_METRIC}' is not a finite, non-negative number ({energy})"
        return cls(
            status=status,
            energy_kwh=float(energy) if usable else None,
            metrics=_numeric_metrics(result),
            info={k: v for k, v in result.items() if is_info_key(k)},
            n_reports=None if reports is None else int(reports),
            history=tuple(Report.from_json(item) for item in json.loads(result.get(HISTORY_KEY) or "[]")),
            segment=result.get(SEGMENT_KEY),
            checkpointed=bool(result.get(CHECKPOINTED_KEY)),
            error=error,
            iteration=result.get("training_iteration"),
            time_total_s=float(result.get("time_total_s") or 0.0),
            time_this_iter_s=float(result.get("time_this_iter_s") or 0.0),
        )


def running_result(
    metrics: Mapping[str, float], energy: Mapping[str, Any], n_reports: int,
    history: list[tuple[int, dict[str, float], float]], segment: str, checkpointed: bool,
) -> dict[str, Any]:
    """A heartbeat from a running trial: its latest metrics and the energy so far."""
    return {**metrics, **energy, STATUS_KEY: TrialStatus.RUNNING.value, REPORTS_KEY: n_reports,
            HISTORY_KEY: json.dumps(history), SEGMENT_KEY: segment, CHECKPOINTED_KEY: float(checkpointed)}


def final_result(
    metrics: Mapping[str, float], energy: Mapping[str, Any], n_reports: int,
    history: list[tuple[int, dict[str, float], float]], segment: str, node: str, error: str | None,
) -> dict[str, Any]:
    """A trial's last report: ``COMPLETED`` with its metrics, or ``FAILED`` with its error;
    either way with the energy it spent."""
    status = TrialStatus.FAILED if error is not None else TrialStatus.COMPLETED
    record: dict[str, Any] = {**metrics, REPORTS_KEY: n_reports, "node": node, STATUS_KEY: status.value}
    if error is not None:
        record[ERROR_KEY] = error
    return {**record, **energy, HISTORY_KEY: json.dumps(history), SEGMENT_KEY: segment}


def _numeric_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The objective's own numbers in a result: not energy, provenance or Ray's fields."""
    out = {}
    for key, value in result.items():
        if key == ENERGY_METRIC or is_info_key(key) or key.startswith(_DROPPED_PREFIXES) or key in RAY_RESULT_KEYS:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out
