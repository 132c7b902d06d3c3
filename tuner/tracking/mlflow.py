"""MLflow records: one parent run per study, one child run per trial, from the driver only.

Trials never talk to MLflow themselves: one writer means no lock contention on SQLite,
no credentials on workers, and nothing logged twice when Ray retries an actor.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.config import ENERGY_METRIC, config_dump
from tuner.energy import J_PER_KWH
from tuner.pareto import reference_point, study_hypervolume
from tuner.redact import redact, redact_obj
from tuner.study.record import TrialRecord, TrialStatus

if TYPE_CHECKING:
    from tuner.config import StudyConfig
    from tuner.result import TuneResult

_MLFLOW_STATUS = {TrialStatus.COMPLETED: "FINISHED", TrialStatus.FAILED: "FAILED"}
_MAX_TAG = 5000
_BATCH = 1000
POWER_METRIC = "power_w"
"""A running trial's power over each heartbeat interval, in its child run's history."""

MetricPoint = tuple[int, float, Mapping[str, float]]
"""``(step, unix time, metrics)``: one point of a child run's metric histories."""


class StudyTracker:
    """Writes a study and its trials to MLflow with ``MlflowClient`` (no global run state)."""

    def __init__(self, config: StudyConfig, output_dir: Path) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        from tuner.tracking.sqlite_template import prepare_store

        self.tracking_uri = config.tracking_uri
        prepare_store(self.tracking_uri)  # a new SQLite store by copy, not by migrations
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self._mlflow = mlflow
        name = config.mlflow.experiment or f"greentune-{config.study_name}"
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            # A local store gets its artifacts next to it, not in the cwd's ./mlruns.
            local = self.tracking_uri.startswith(("sqlite:", "file:", "/"))
            location = (output_dir / "mlartifacts").as_uri() if local else None
            self.experiment_id = self.client.create_experiment(name, artifact_location=location)
        else:
            self.experiment_id = experiment.experiment_id
        self.experiment_name = name
        self.run_id = ""

    @classmethod
    def for_run(cls, tracking_uri: str, run_id: str) -> StudyTracker:
        """A tracker writing to an existing study run (replaying a queue needs no config)."""
        from mlflow.tracking import MlflowClient

        tracker = cls.__new__(cls)
        tracker.tracking_uri, tracker.run_id = tracking_uri, run_id
        tracker.client = MlflowClient(tracking_uri=tracking_uri)
        tracker.experiment_id = tracker.client.get_run(run_id).info.experiment_id
        tracker.experiment_name = tracker.client.get_experiment(tracker.experiment_id).name
        return tracker

    def start_study(self, config: StudyConfig) -> str:
        run = self.client.create_run(
            self.experiment_id,
            run_name=config.study_name,
            tags={"greentune.kind": "study", "greentune.strategy": config.strategy},
        )
        self.run_id = run.info.run_id
        params = config_params(config)
        self._log_params(self.run_id, params)
        self.client.log_text(self.run_id, json.dumps(config_dump(config), indent=2, default=str), "config.json")
        return self.run_id

    def resume_study(self, run_id: str, resumes: int) -> str:
        """Reopen the study's parent run after its driver died: one study, one run."""
        from mlflow.exceptions import MlflowException

        from tuner.config import ConfigError

        try:
            self.client.get_run(run_id)
        except MlflowException as exc:
            raise ConfigError(f"cannot resume: MLflow run {run_id} not found at {self.tracking_uri} ({exc})") from None
        self.client.update_run(run_id, status="RUNNING")
        self.client.set_tag(run_id, "greentune.resumes", str(resumes))
        self.run_id = run_id
        return run_id

    def open_trial(self, trial_id: str, params: Mapping[str, Any], started_at: float) -> str:
        """The trial's child run, opened as the trial starts so MLflow shows it running."""
        tags = {"mlflow.parentRunId": self.run_id, "greentune.kind": "trial", "greentune.trial_id": trial_id,
                "greentune.status": TrialStatus.RUNNING.value}
        run = self.client.create_run(self.experiment_id, start_time=_ms(started_at), run_name=f"trial-{trial_id}",
                                     tags=redact_obj(tags))
        self._log_params(run.info.run_id, params)
        return run.info.run_id

    def log_points(self, run_id: str, points: Sequence[MetricPoint]) -> None:
        """Metrics of a running trial, each at its own step and time."""
        from mlflow.entities import Metric

        batch = [Metric(key, float(value), _ms(at), step)
                 for step, at, values in points for key, value in values.items() if _finite(value)]
        for start in range(0, len(batch), _BATCH):  # MLflow takes at most 1000 metrics per call
            self.client.log_batch(run_id, metrics=batch[start:start + _BATCH])

    def log_trial(self, entry: TrialRecord, history: Sequence[MetricPoint], run_id: str = "",
                  logged: int = 0) -> str:
        """Close the trial's child run with its status, final metrics, energy and true end time.

        ``run_id`` is the run :meth:`open_trial` opened, of which ``logged`` points of
        ``history`` are already written; without it (a replay, or MLflow was away when the
        trial started) the run is created here, with the trial's own start time.
        """
        tags = {"greentune.status": entry.status.value}
        # Provenance strings (energy_source, node, hardware) are tags; numbers are metrics.
        tags.update({k: str(v)[:_MAX_TAG] for k, v in entry.info.items() if isinstance(v, str)})
        error = entry.error
        if error:
            tags["greentune.error"] = str(error)[:_MAX_TAG]
        if entry.stop_reason:
            tags["greentune.stop_reason"] = entry.stop_reason[:_MAX_TAG]
        if not run_id:
            started = entry.started_at if entry.run_started_at is None else min(entry.started_at, entry.run_started_at)
            run_id, logged = self.open_trial(entry.trial_id, entry.params, started), 0
        self.client.log_batch(run_id, tags=[_tag(k, v) for k, v in redact_obj(tags).items()])
        self.log_points(run_id, [*history[logged:], *final_points(entry, history)])
        if error:
            self.client.log_text(run_id, redact(str(error)), "error.txt")
        ended = entry.ended_at if entry.ended_at is not None else time.time()
        self.client.set_terminated(run_id, status=_MLFLOW_STATUS.get(entry.status, "KILLED"), end_time=_ms(ended))
        return run_id

    def finish_study(self, result: TuneResult, artifacts: list[Path]) -> None:
        metrics = study_metrics(result)
        carbon = {k: v for k, v in result.carbon.items() if k.startswith(("co2_", "carbon_"))}
        metrics.update({k: float(v) for k, v in carbon.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
        self._log_metrics(self.run_id, metrics, int(time.time() * 1000))
        for key, value in carbon.items():
            if isinstance(value, str):
                self.client.set_tag(self.run_id, f"greentune.{key}", redact(value)[:_MAX_TAG])
        if result.finish_reason:
            self.client.set_tag(self.run_id, "greentune.finish_reason", result.finish_reason)
        self.client.set_tag(self.run_id, "greentune.over_budget", "true" if result.over_budget else "false")
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))
        # an interrupted study is not over: `--resume` reopens this run
        self.client.set_terminated(self.run_id, status="KILLED" if result.interrupted else "FINISHED")

    def fail_study(self, error: str) -> None:
        if self.run_id:
            self.client.set_tag(self.run_id, "greentune.error", redact(error)[:_MAX_TAG])
            self.client.set_terminated(self.run_id, status="FAILED")

    @property
    def ui_command(self) -> str:
        return f"mlflow ui --backend-store-uri {redact(self.tracking_uri)}"

    def _log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        batch = [Param(_param_key(str(k)), redact(str(v))[:6000]) for k, v in params.items()]
        for start in range(0, len(batch), 100):  # MLflow takes at most 100 params per call
            self.client.log_batch(run_id, params=batch[start:start + 100])

    def _log_metrics(self, run_id: str, metrics: dict[str, float], timestamp: int, step: int = 0) -> None:
        from mlflow.entities import Metric

        batch = [Metric(key, float(value), timestamp, step) for key, value in metrics.items() if _finite(value)]
        if batch:
            self.client.log_batch(run_id, metrics=batch)


def study_metrics(result: TuneResult) -> dict[str, float]:
    """The parent run's summary, by which MLflow's compare view ranks studies: the best and
    the knee trial, the hypervolume and the reference point it is measured from, energy
    totals against the budget (``over_budget_kwh`` above 0 flags an overshoot, as the
    ``greentune.over_budget`` tag does), and trial counts by status (zeros included, so
    every study has every column)."""
    counts = result.trials["status"].value_counts().to_dict() if not result.trials.empty else {}
    metrics = {
        "total_energy_kwh": result.total_energy_kwh,
        "overhead_kwh": result.overhead_kwh,
        "trials_energy_kwh": result.total_energy_kwh - result.overhead_kwh,
        "facility_energy_kwh": result.facility_energy_kwh,
        # the budget, the share of it spent, and by how much the study went over (0 within it)
        "budget_kwh": result.budget_kwh,
        "budget_used": result.total_energy_kwh / result.budget_kwh if result.budget_kwh > 0 else math.nan,
        "over_budget_kwh": result.over_budget_kwh,
        "n_trials": float(len(result.trials)),
        "pareto_front_size": float(len(result.pareto_front)),
        **{f"n_{status.value}": float(counts.get(status.value, 0)) for status in TrialStatus if status.final},
    }
    for label, row in (("best", result.best()), ("knee", result.knee())):
        if row is not None:
            metrics[f"{label}_{result.metric}"] = float(row[result.metric])
            metrics[f"{label}_{ENERGY_METRIC}"] = float(row[ENERGY_METRIC])
    reference_metric, reference_kwh = reference_point(result)
    metrics.update(hypervolume=study_hypervolume(result), hv_reference_metric=reference_metric,
                   hv_reference_kwh=reference_kwh)
    return metrics


def config_params(config: StudyConfig) -> dict[str, str]:
    """Every config field as a parent-run param, so MLflow's compare view can rank studies.

    Nested fields go by dotted name (``carbon.provider``), each search-space parameter is
    one param holding its spec as JSON (``search_space.lr``), secrets are masked.
    """
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any, depth: int) -> None:
        if isinstance(value, dict) and value and not (prefix.startswith("search_space.") and depth == 2):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner, depth + 1)
        else:
            flat[prefix] = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)

    walk("", config_dump(config), 0)
    return flat


def _param_key(key: str) -> str:
    """A name MLflow accepts: letters, digits and ``_-. /``; anything else becomes ``_``."""
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in key)[:250]


def energy_points(entry: TrialRecord, after: int = 0) -> list[MetricPoint]:
    """The trial's energy so far and its power, one point per heartbeat, from ``after`` on.

    Power is the energy of the heartbeat's interval over its length, as a meter reading
    would give it; the first interval starts when the trial process did.
    """
    points: list[MetricPoint] = []
    timeline = entry.energy_timeline
    for index in range(after, len(timeline)):
        at, kwh = timeline[index]
        before_at, before_kwh = timeline[index - 1] if index else (entry.run_started_at or at, 0.0)
        values = {ENERGY_METRIC: kwh}
        if at - before_at > 0:
            values[POWER_METRIC] = (kwh - before_kwh) * J_PER_KWH / (at - before_at)
        points.append((index + 1, at, values))
    return points


def final_points(entry: TrialRecord, history: Sequence[MetricPoint]) -> list[MetricPoint]:
    """What the trial ended with, placed after its history so no curve jumps back to step 0.

    A final metric goes at the step of the last report (a value the last report already
    logged is not logged twice); the final energy one step after the last heartbeat; the figures
    that describe the whole trial (duration, CPU time, CO2, energy parts) at step 0.
    """
    ended = entry.ended_at if entry.ended_at is not None else time.time()
    last: dict[str, tuple[int, float]] = {}
    for step, _, values in history:
        for key, value in values.items():
            if key not in last or step >= last[key][0]:
                last[key] = (step, value)
    step = int(entry.n_reports or 0)
    metrics = {k: v for k, v in entry.metrics.items() if last.get(k) != (step, v)}
    energy_step = len(entry.energy_timeline) + 1
    summary = {k: float(v) for k, v in entry.info.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    points: list[MetricPoint] = [(step, ended, metrics), (0, ended, summary),
                                 (energy_step, ended, {ENERGY_METRIC: entry.energy_kwh})]
    return [point for point in points if point[2]]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _ms(unix_s: float) -> int:
    return int(unix_s * 1000)


def _tag(key: str, value: str) -> Any:
    from mlflow.entities import RunTag

    return RunTag(key, value)

