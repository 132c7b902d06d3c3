"""Rebuild a :class:`TuneResult` from what a study left behind, without rerunning anything.

Two sources: a study's output directory (``trials.csv`` and ``study.json``, which holds
the config and totals once the study finished), or its parent MLflow run (the
``trials.csv`` and ``config.json`` artifacts, the totals from the run's metrics). The
objective is never imported: the report needs the search space, not the code.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from tuner.config import ConfigError, config_from_dump
from tuner.result import TuneResult
from tuner.study.files import STATE_FILE, TRIALS_FILE, read_trials_csv


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
    return TuneResult.from_state(read_trials_csv(out / TRIALS_FILE), config, state, output_dir=out)


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
    state: dict[str, Any] = {k: v for k, v in run.data.metrics.items()
                             if k in ("total_energy_kwh", "overhead_kwh") or k.startswith(("co2_", "carbon_"))}
    state.update({k.removeprefix("greentune."): v for k, v in run.data.tags.items()
                  if k.startswith("greentune.carbon_")})
    state.update(mlflow_run_id=run_id, tracking_uri=client.tracking_uri,
                 finish_reason=run.data.tags.get("greentune.finish_reason"))
    return TuneResult.from_state(trials, config, state, output_dir=output_dir)
