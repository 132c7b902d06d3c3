"""MLflow records: one parent run per study, one child run per trial, from the driver only.

Trials never talk to MLflow themselves: one writer means no lock contention on SQLite,
no credentials on workers, and nothing logged twice when Ray retries an actor.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.config import ENERGY_METRIC, config_dump
from tuner.redact import redact, redact_obj
from tuner.study.record import TrialRecord, TrialStatus

if TYPE_CHECKING:
    from tuner.config import StudyConfig
    from tuner.result import TuneResult

_MLFLOW_STATUS = {TrialStatus.COMPLETED: "FINISHED", TrialStatus.FAILED: "FAILED"}
_MAX_TAG = 5000


class StudyTracker:
    """Writes a study and its trials to MLflow with ``MlflowClient`` (no global run state)."""

    def __init__(self, config: StudyConfig, output_dir: Path) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.tracking_uri = config.tracking_uri
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
        params = {
            "budget_kwh": config.budget_kwh,
            "strategy": config.strategy,
            "metric": config.metric,
            "mode": config.mode,
            "seed": config.seed,
            "max_trials": config.max_trials,
            "max_concurrent_trials": config.max_concurrent_trials,
            "pue": config.pue,
            "watts_per_core": config.energy.watts_per_core,
            "cpu_per_trial": config.resources_per_trial.cpu,
            "gpu_per_trial": config.resources_per_trial.gpu,
            "carbon_provider": config.carbon.provider,
            "carbon_zone": config.carbon.zone or config.carbon.region,
            "carbon_policy": config.carbon.policy,
            "carbon_deadline": config.carbon.deadline,
        }
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

    def log_trial(self, entry: TrialRecord, history: list[tuple[int, dict[str, float]]]) -> str:
        """One child run holding the trial's parameters, metrics, energy and status."""
        tags = {
            "mlflow.parentRunId": self.run_id,
            "greentune.kind": "trial",
            "greentune.trial_id": entry.trial_id,
            "greentune.status": entry.status.value,
        }
        # Provenance strings (energy_source, node, hardware) are tags; numbers are metrics.
        tags.update({k: str(v)[:_MAX_TAG] for k, v in entry.info.items() if isinstance(v, str)})
        error = entry.error
        if error:
            tags["greentune.error"] = str(error)[:_MAX_TAG]
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{entry.trial_id}", tags=redact_obj(tags))
        run_id = run.info.run_id
        self._log_params(run_id, entry.params)
        now = int(time.time() * 1000)
        metrics = {**entry.metrics, ENERGY_METRIC: entry.energy_kwh}
        metrics.update({k: float(v) for k, v in entry.info.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
        self._log_metrics(run_id, metrics, now)
        for step, values in history:
            self._log_metrics(run_id, values, now, step=step)
        if error:
            self.client.log_text(run_id, redact(str(error)), "error.txt")
        self.client.set_terminated(run_id, status=_MLFLOW_STATUS.get(entry.status, "KILLED"))
        return run_id

    def finish_study(self, result: TuneResult, artifacts: list[Path]) -> None:
        counts = result.trials["status"].value_counts().to_dict() if not result.trials.empty else {}
        metrics = {
            "total_energy_kwh": result.total_energy_kwh,
            "overhead_kwh": result.overhead_kwh,
            "trials_energy_kwh": result.total_energy_kwh - result.overhead_kwh,
            "facility_energy_kwh": result.facility_energy_kwh,
            "n_trials": float(len(result.trials)),
            "pareto_front_size": float(len(result.pareto_front)),
            **{f"n_{status}": float(n) for status, n in counts.items()},
        }
        carbon = {k: v for k, v in result.carbon.items() if k.startswith(("co2_", "carbon_"))}
        metrics.update({k: float(v) for k, v in carbon.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
        self._log_metrics(self.run_id, metrics, int(time.time() * 1000))
        for key, value in carbon.items():
            if isinstance(value, str):
                self.client.set_tag(self.run_id, f"greentune.{key}", redact(value)[:_MAX_TAG])
        if result.finish_reason:
            self.client.set_tag(self.run_id, "greentune.finish_reason", result.finish_reason)
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status="FINISHED")

    def fail_study(self, error: str) -> None:
        if self.run_id:
            self.client.set_tag(self.run_id, "greentune.error", redact(error)[:_MAX_TAG])
            self.client.set_terminated(self.run_id, status="FAILED")

    @property
    def ui_command(self) -> str:
        return f"mlflow ui --backend-store-uri {redact(self.tracking_uri)}"

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        batch = [Param(str(k), redact(str(v))[:6000]) for k, v in params.items()]
        if batch:
            self.client.log_batch(run_id, params=batch)

    def _log_metrics(self, run_id: str, metrics: dict[str, float], timestamp: int, step: int = 0) -> None:
        from mlflow.entities import Metric

        batch = [
            Metric(key, float(value), timestamp, step)
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and math.isfinite(value)
        ]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

