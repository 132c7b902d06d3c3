"""Rebuild a :class:`TuneResult` from what a study left behind, without rerunning anything.

Two sources: a study's output directory (``trials.csv`` and ``study.json``, which holds
the config and totals once the study finished), or its parent MLflow run (the
``trials.csv`` and ``config.json`` artifacts, the totals from the run's metrics). The
objective is never imported: the report needs the search space, not the code.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from tuner._state import STATE_FILE, TRIALS_FILE, read_trials_csv
from tuner.config import ConfigError, StudyConfig
from tuner.result import TuneResult


def load_from_dir(directory: str | Path) -> TuneResult:
    """A study's result from its output directory."""
    out = Path(directory).expanduser().resolve()
    missing = [name for name in (TRIALS_FILE, STATE_FILE) if not (out / name).is_file()]
    if missing:
        raise ConfigError(f"'{out}' is not a study output directory: {', '.join(missing)} missing")
    state = json.loads((out / STATE_FILE).read_text())
    config_data = state.get("config")
    if config_data is None:
        if not state.get("mlflow_run_id"):
            raise ConfigError(f"'{out / STATE_FILE}' has no 'config' (the study did not finish) and no MLflow run")
        return load_from_mlflow(state["mlflow_run_id"], state.get("tracking_uri"), output_dir=out)
    config = config_from_dump(config_data, fallback_name=state.get("name"))
    trials = read_trials_csv(out / TRIALS_FILE)
    trials_kwh = float(trials["energy_kwh"].fillna(0).sum()) if "energy_kwh" in trials else 0.0
    overhead = float(state.get("overhead_kwh") or 0.0)
    carbon = {k: v for k, v in state.items() if k.startswith(("co2_", "carbon_"))}
    return TuneResult(
        trials=trials, metric=config.metric, mode=config.mode, budget_kwh=config.budget_kwh,
        total_energy_kwh=float(state.get("total_energy_kwh", trials_kwh + overhead)), overhead_kwh=overhead,
        param_names=list(config.search_space), mlflow_run_id=state.get("mlflow_run_id"),
        tracking_uri=state.get("tracking_uri"), output_dir=out, pue=config.pue,
        finish_reason=state.get("finish_reason"), config=config,
        co2_kg=state.get("co2_kg"), co2_counterfactual_kg=state.get("co2_counterfactual_kg"), carbon=carbon,
    )


def load_from_mlflow(run_id: str, tracking_uri: str | None = None, output_dir: Path | None = None) -> TuneResult:
    """A study's result from its parent MLflow run (``tracking_uri`` or ``MLFLOW_TRACKING_URI``)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        where = tracking_uri or "MLFLOW_TRACKING_URI / the default store"
        raise ConfigError(f"no MLflow run '{run_id}' in {where}; pass --tracking-uri") from exc
    kind = run.data.tags.get("greentune.kind")
    if kind != "study":
        parent = run.data.tags.get("mlflow.parentRunId")
        hint = f"; its study run is {parent}" if parent else ""
        raise ConfigError(f"MLflow run '{run_id}' is not a greentune study run (greentune.kind={kind}){hint}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            trials = read_trials_csv(client.download_artifacts(run_id, TRIALS_FILE, tmp))
            config_data = json.loads(Path(client.download_artifacts(run_id, "config.json", tmp)).read_text())
        except (MlflowException, OSError) as exc:
            raise ConfigError(f"MLflow run '{run_id}' lacks trials.csv or config.json (did it finish?): {exc}") from exc
    config = config_from_dump(config_data, fallback_name=run.info.run_name)
    metrics = run.data.metrics
    overhead = float(metrics.get("overhead_kwh", 0.0))
    total = metrics.get("total_energy_kwh", float(trials["energy_kwh"].fillna(0).sum()) + overhead)
    co2 = metrics.get("co2_kg")
    carbon = {k: v for k, v in metrics.items() if k.startswith(("co2_", "carbon_"))}
    carbon.update({k.removeprefix("greentune."): v for k, v in run.data.tags.items()
                   if k.startswith("greentune.carbon_")})
    return TuneResult(
        trials=trials, metric=config.metric, mode=config.mode, budget_kwh=config.budget_kwh,
        total_energy_kwh=float(total), overhead_kwh=overhead, param_names=list(config.search_space),
        mlflow_run_id=run_id, tracking_uri=client.tracking_uri, output_dir=output_dir, pue=config.pue,
        finish_reason=run.data.tags.get("greentune.finish_reason"),
        config=config, co2_kg=co2 if co2 is not None and math.isfinite(co2) else None,
        co2_counterfactual_kg=metrics.get("co2_counterfactual_kg"), carbon=carbon,
    )


def config_from_dump(data: dict[str, Any], fallback_name: str | None = None) -> StudyConfig:
    """Validate a stored config without importing its objective (a placeholder stands in)."""
    data = dict(data)
    objective_name = str(data.get("objective", "unknown"))

    def objective(params: dict[str, Any]) -> dict[str, float]:
        raise RuntimeError(f"this config was rebuilt from a record; its objective '{objective_name}' was not loaded")

    data["objective"] = objective
    if not data.get("name") and fallback_name:
        data["name"] = fallback_name
    try:
        return StudyConfig.model_validate(data)
    except Exception as exc:
        raise ConfigError(f"the stored study config is not valid for this greentune version: {exc}") from exc
