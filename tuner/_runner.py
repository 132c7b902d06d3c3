"""``tune()``: config in, Ray Tune trials out, results to MLflow and a :class:`TuneResult`."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tuner._budget import BudgetGate, BudgetStopper, EnergyLedger
from tuner._callback import StudyCallback
from tuner._trial import TrialSettings, run_trial
from tuner.config import ENERGY_METRIC, ConfigError, StudyConfig, load_config, resolve_objective
from tuner.energy import driver_watts_per_core, with_idle_baseline
from tuner.result import TuneResult, pareto_mask
from tuner.search import make_searcher

logger = logging.getLogger("tuner")

STATE_FILE = "study.json"
TRIALS_FILE = "trials.csv"


def tune(
    config: StudyConfig | Mapping[str, Any] | str | os.PathLike[str],
    budget_kwh: float | None = None,
    *,
    max_trials: int | None = None,
    strategy: str | None = None,
    seed: int | None = None,
    address: str | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> TuneResult:
    """Search the metric-versus-energy Pareto front of ``config`` within ``budget_kwh``.

    ``config`` is a :class:`StudyConfig`, a dict, or a YAML path; keyword arguments that
    are not ``None`` override its fields. Everything is validated before Ray starts.
    Ray is reached at ``address`` (or ``RAY_ADDRESS``), else started locally. Example::

        result = tuner.tune("examples/quickstart.yaml", budget_kwh=0.001)
        print(result.pareto_front)
    """
    cfg = load_config(
        config, budget_kwh=budget_kwh, max_trials=max_trials, strategy=strategy, seed=seed,
        address=address, output_dir=output_dir,
    )
    out = cfg.resolved_output_dir
    if (out / STATE_FILE).exists():
        raise ConfigError(
            f"output_dir '{out}' already holds a study; choose another `name` or `output_dir`, or delete it"
        )
    objective = _shippable_objective(cfg)
    searcher = make_searcher(cfg)  # builds Ax (seconds) before any trial energy is spent
    out.mkdir(parents=True, exist_ok=True)

    from tuner.tracking import StudyTracker

    tracker = StudyTracker(cfg, out)
    run_id = tracker.start_study(cfg)
    _write_json(out / STATE_FILE, {"name": cfg.study_name, "mlflow_run_id": run_id,
                                    "tracking_uri": cfg.tracking_uri, "started_at": time.time()})
    _ensure_ray(cfg.address)
    ledger = EnergyLedger(cfg.budget_kwh, driver_watts_per_core(cfg.energy), cfg.metric,
                          lambda: searcher.cpu_seconds, cfg.energy.report_interval_s)
    gate = BudgetGate(searcher, ledger, cfg.max_trials)
    param_names = list(cfg.search_space)

    def table() -> pd.DataFrame:
        return trials_frame(ledger, param_names, cfg.metric)

    def front_size() -> int:
        done = [e for e in ledger.entries.values() if e.status == "completed" and cfg.metric in e.metrics]
        if not done:
            return 0
        import numpy as np

        metric = np.array([e.metrics[cfg.metric] for e in done])
        energy = np.array([e.energy_kwh for e in done])
        return int(pareto_mask(metric, energy, cfg.mode).sum())

    def persist() -> None:
        _atomic_csv(table(), out / TRIALS_FILE)

    callback = StudyCallback(ledger, tracker, front_size, persist, 10.0 if progress else None)
    try:
        _run_tuner(cfg, objective, gate, ledger, callback, out)
        for entry in ledger.close_unfinished():
            callback.record(entry)
    except BaseException as exc:
        for entry in ledger.close_unfinished():
            callback.record(entry)
        tracker.fail_study(f"{type(exc).__name__}: {exc}")
        raise
    result = TuneResult(
        trials=table(),
        metric=cfg.metric,
        mode=cfg.mode,
        budget_kwh=cfg.budget_kwh,
        total_energy_kwh=ledger.total_kwh,
        overhead_kwh=ledger.overhead_kwh,
        param_names=param_names,
        mlflow_run_id=run_id,
        tracking_uri=cfg.tracking_uri,
        output_dir=out,
        pue=cfg.pue,
        finish_reason="energy budget spent" if ledger.stopped_at else gate.finish_reason,
        extra={"searcher_cpu_s": searcher.cpu_seconds, "searcher_step_s": list(searcher.step_seconds)},
    )
    _finish(result, tracker, out)
    if progress:
        print(result.summary(), file=sys.stderr, flush=True)
    return result


def _run_tuner(cfg: StudyConfig, objective: Any, gate: BudgetGate, ledger: EnergyLedger,
               callback: StudyCallback, out: Path) -> None:
    from ray import tune

    settings = TrialSettings(
        objective=objective, metric=cfg.metric, energy=with_idle_baseline(cfg.energy),
        report_interval_s=cfg.energy.report_interval_s,
    )
    resources = {"cpu": cfg.resources_per_trial.cpu, "gpu": cfg.resources_per_trial.gpu}
    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings), resources)
    tuner = tune.Tuner(
        trainable,
        param_space={},
        tune_config=tune.TuneConfig(
            search_alg=gate,
            num_samples=cfg.max_trials or -1,
            max_concurrent_trials=cfg.max_concurrent_trials,
        ),
        run_config=tune.RunConfig(
            name="ray",
            storage_path=str(out),
            stop=BudgetStopper(ledger),
            callbacks=[callback],
            verbose=0,
            # A retried trial would spend its energy twice for one result.
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    tuner.fit()


def _finish(result: TuneResult, tracker: Any, out: Path) -> None:
    from tuner.plots import pareto_html, pareto_png

    _atomic_csv(result.trials, out / TRIALS_FILE)
    artifacts = [out / TRIALS_FILE]
    try:
        artifacts += [pareto_html(result, out / "pareto.html"), pareto_png(result, out / "pareto.png")]
    except Exception as exc:  # noqa: BLE001 - a plot must not lose a finished study
        logger.warning("could not draw the Pareto plot: %s", exc)
    tracker.finish_study(result, artifacts)
    state = json.loads((out / STATE_FILE).read_text())
    state.update({"finished_at": time.time(), "total_energy_kwh": result.total_energy_kwh,
                  "overhead_kwh": result.overhead_kwh})
    _write_json(out / STATE_FILE, state)


def trials_frame(ledger: EnergyLedger, param_names: list[str], metric: str) -> pd.DataFrame:
    """The ledger as a table: one row per trial, parameters first."""
    rows = []
    for entry in ledger.entries.values():
        info = dict(entry.info)
        rows.append({
            "trial_id": entry.trial_id,
            "status": entry.status,
            **{name: entry.params.get(name) for name in param_names},
            metric: entry.metrics.get(metric),
            **{k: v for k, v in entry.metrics.items() if k != metric},
            ENERGY_METRIC: entry.energy_kwh,
            "epochs": info.pop("greentune_epochs", None),
            "error": info.pop("greentune_error", None),
            **info,
            "mlflow_run_id": entry.mlflow_run_id or None,
        })
    columns = ["trial_id", "status", *param_names, metric, ENERGY_METRIC]
    return pd.DataFrame(rows, columns=None if rows else columns)


def _shippable_objective(cfg: StudyConfig) -> Any:
    """The objective as Ray should ship it to trial processes.

    Functions from modules outside site-packages (a user's script directory) are
    pickled by value, so trial processes on any node can run them without the file.
    """
    func = resolve_objective(cfg.objective)
    module = sys.modules.get(getattr(func, "__module__", "") or "")
    path = getattr(module, "__file__", None) or ""
    if module is not None and module.__name__ != "__main__" and "site-packages" not in path:
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(module)
    return func


def _ensure_ray(address: str | None) -> None:
    import ray

    # Tune's own console tables would interleave with greentune's progress lines.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
             logging_level=logging.WARNING)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _atomic_csv(frame: pd.DataFrame, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".csv.tmp")
    with os.fdopen(fd, "w") as handle:
        frame.to_csv(handle, index=False)
    os.replace(tmp, path)
