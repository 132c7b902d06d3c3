"""``tune()``: config in, Ray Tune trials out, results to MLflow and a :class:`TuneResult`."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from tuner.atomic import OutputWriteError
from tuner._budget import BudgetGate, BudgetStopper, EnergyLedger
from tuner._callback import StudyCallback
from tuner.redact import protect_study, redact_obj
from tuner._state import (
    LEDGER_FILE,
    SEARCHER_FILE,
    STATE_FILE,
    TRIALS_FILE,
    read_json,
    write_csv,
    write_json,
)
from tuner._trial import TrialSettings, run_trial
from tuner.config import ENERGY_METRIC, ConfigError, StudyConfig, load_config, resolve_objective
from tuner.energy import driver_watts_per_core, with_idle_baseline
from tuner.result import TuneResult, pareto_mask
from tuner.search import make_searcher
from tuner.search.ax_searcher import quiet_ax_logging
from tuner.search.base import Outcome
from tuner.tracking import _config_dump

logger = logging.getLogger("tuner")
quiet_ax_logging()  # the report's surrogate imports Ax even for grid studies

# what must match for a resumed study to be the same study
_SAME_STUDY_FIELDS = ("objective", "search_space", "metric", "mode", "strategy", "seed", "grid_resolution")


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
    resume: bool = False,
) -> TuneResult:
    """Search the metric-versus-energy Pareto front of ``config`` within ``budget_kwh``.

    ``config`` is a :class:`StudyConfig`, a dict, or a YAML path; keyword arguments that
    are not ``None`` override its fields. Everything is validated before Ray starts.
    Ray is reached at ``address`` (or ``RAY_ADDRESS``), else started locally.
    ``resume=True`` continues the study in ``output_dir`` after its driver died: finished
    trials are kept, not rerun, and the energy already spent stays counted. Example::

        result = tuner.tune("examples/quickstart.yaml", budget_kwh=0.001)
        print(result.pareto_front)
    """
    cfg = load_config(
        config, budget_kwh=budget_kwh, max_trials=max_trials, strategy=strategy, seed=seed,
        address=address, output_dir=output_dir,
    )
    protect_study(cfg.tracking_uri)
    out = cfg.resolved_output_dir
    previous = _previous_study(cfg, out, resume)
    objective = _shippable_objective(cfg)
    from tuner.carbon.accounting import CarbonAccountant
    from tuner.carbon.registry import build_provider

    carbon_provider = build_provider(cfg.carbon)  # reads a CSV now, not mid-study
    searcher = make_searcher(cfg)  # builds Ax (seconds) before any trial energy is spent
    if cfg.power_limit_range_w is not None:
        _check_power_limits(cfg)
    out.mkdir(parents=True, exist_ok=True)

    from tuner._mlflow_queue import open_tracker

    tracker = open_tracker(cfg, out)  # queues records on disk while MLflow is down
    if previous is None:
        run_id = tracker.start_study(cfg)
        state = {"name": cfg.study_name, "mlflow_run_id": run_id, "tracking_uri": cfg.tracking_uri,
                 "started_at": time.time(), "resumes": 0, "config": _config_dump(cfg)}
    else:
        state = {**previous, "resumes": int(previous.get("resumes") or 0) + 1, "resumed_at": time.time()}
        run_id = tracker.resume_study(previous["mlflow_run_id"], state["resumes"])
    write_json(out / STATE_FILE, redact_obj(state))
    _ensure_ray(cfg.address)
    ledger = EnergyLedger(cfg.budget_kwh, driver_watts_per_core(cfg.energy), cfg.metric,
                          lambda: searcher.cpu_seconds, cfg.energy.report_interval_s,
                          searcher.expected_step_cpu_seconds)
    interrupted = _restore_books(ledger, searcher, out, cfg.metric) if previous is not None else []
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

    def save_ledger() -> None:
        write_json(out / LEDGER_FILE, ledger.to_json())

    def persist() -> None:
        """After every finished trial: the ledger first (it holds the MLflow run id just
        logged), then the optimiser (a resume reconciles it with the ledger), then the table."""
        save_ledger()
        start = time.process_time()
        searcher.save_state(out / SEARCHER_FILE)
        searcher.cpu_seconds += time.process_time() - start  # the optimiser's upkeep is overhead too
        write_csv(table(), out / TRIALS_FILE)

    from tuner.carbon.wiring import gate_report, gate_searcher, pause_scheduler, utc

    study_start = float(state["started_at"])  # a resumed study keeps its start and its deadline
    accountant = CarbonAccountant(carbon_provider, cfg.pue, study_start=study_start)
    launcher = gate_searcher(gate, carbon_provider, cfg, ledger, utc(study_start))
    pauser = pause_scheduler(carbon_provider, cfg, ledger, utc(study_start))
    callback = StudyCallback(
        ledger, tracker, front_size, persist, 10.0 if progress else None, carbon=accountant,
        save_ledger=save_ledger,
    )
    if previous is not None:
        _record_restored(ledger, callback, interrupted, progress)
    try:
        _run_tuner(cfg, objective, launcher, ledger, callback, out, attempt=state["resumes"], scheduler=pauser)
        for entry in ledger.close_unfinished():
            callback.record(entry)
    except BaseException as exc:
        for entry in ledger.close_unfinished():
            callback.record(entry)
        tracker.fail_study(f"{type(exc).__name__}: {exc}")
        raise
    carbon = {**_study_carbon(accountant, ledger), **gate_report(launcher), **gate_report(pauser)}
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
        co2_kg=carbon.get("co2_kg"),
        co2_counterfactual_kg=carbon.get("co2_counterfactual_kg"),
        carbon=carbon,
        config=cfg,
        searcher=searcher,
    )
    _finish(result, tracker, out)
    if progress:
        print(result.summary(), file=sys.stderr, flush=True)
    return result


def _study_carbon(accountant: Any, ledger: EnergyLedger) -> dict[str, Any]:
    """Study CO2 totals and where the intensity came from; empty if accounting failed."""
    try:
        totals = accountant.study(ledger.entries.values(), ledger.overhead_kwh, time.time())
    except Exception as exc:  # noqa: BLE001 - CO2 accounting must not lose a finished study
        logger.warning("could not account the study's CO2: %s", exc)
        return {}
    provider = accountant.provider
    totals["carbon_provider"] = getattr(provider, "name", type(provider).__name__)
    totals["carbon_signal"] = provider.signal
    if accountant.fallback_reasons:
        totals["carbon_fallback"] = "; ".join(sorted(accountant.fallback_reasons))
    return totals


def _previous_study(cfg: StudyConfig, out: Path, resume: bool) -> dict[str, Any] | None:
    """The state of the study to resume, or ``None`` for a new one; refuses mismatches."""
    path = out / STATE_FILE
    if not resume:
        if path.exists():
            raise ConfigError(
                f"output_dir '{out}' already holds a study; resume it with `--resume` "
                "(tune(..., resume=True)), or choose another `name` or `output_dir`"
            )
        return None
    if not path.exists():
        raise ConfigError(f"nothing to resume: '{out}' holds no study ({STATE_FILE} missing)")
    state = read_json(path)
    if (out / TRIALS_FILE).exists() and not (out / LEDGER_FILE).exists():
        raise ConfigError(f"cannot resume '{out}': {LEDGER_FILE} is missing but trials were recorded; "
                          "resuming would count their energy again")
    if state.get("finished_at"):
        raise ConfigError(f"the study in '{out}' already finished ({state.get('finish_reason')}); nothing to resume")
    before = state.get("config") or {}
    now = _config_dump(cfg)
    changed = [name for name in _SAME_STUDY_FIELDS if name in before and before[name] != now.get(name)]
    if changed:
        raise ConfigError(
            f"cannot resume '{out}': the config changed in {', '.join(changed)}; "
            "a resumed study must search the same space for the same objective"
        )
    return state


def _restore_books(ledger: EnergyLedger, searcher: Any, out: Path, metric: str) -> list[Any]:
    """Reload the ledger and the optimiser; close the trials the dead driver left running."""
    path = out / LEDGER_FILE
    if path.exists():
        ledger.restore(read_json(path))
    interrupted = ledger.interrupt_unfinished(
        "interrupted: the driver stopped while this trial ran; its energy up to its last "
        "recorded heartbeat is counted"
    )
    history = [(entry.params, _outcome(entry, metric)) for entry in ledger.entries.values()]
    searcher.resume(history, out / SEARCHER_FILE)
    return interrupted


def _outcome(entry: Any, metric: str) -> Outcome:
    if entry.status == "completed" and metric in entry.metrics:
        return Outcome("completed", entry.metrics[metric], entry.energy_kwh)
    if entry.status == "failed":
        return Outcome("failed", error=entry.info.get("greentune_error"))
    return Outcome("stopped")


def _record_restored(ledger: EnergyLedger, callback: StudyCallback, interrupted: list[Any], progress: bool) -> None:
    """Log what the dead driver could not: interrupted trials, and finished ones not yet in MLflow."""
    from tuner._mlflow_queue import drop_partial_child

    for entry in ledger.entries.values():
        if entry.final and entry.mlflow_run_id is None:
            try:  # the dead driver may have logged the run but not yet booked its id
                drop_partial_child(callback.tracker, entry.trial_id)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - MLflow down: the queue takes the record
                logger.warning("could not check MLflow for an earlier run of trial %s: %s", entry.trial_id, exc)
            callback.record(entry)
    if progress:
        counts = ledger.counts()
        print(f"[greentune] resuming: {counts.get('completed', 0)} trials completed, "
              f"{len(interrupted)} interrupted, {ledger.total_kwh:.3g} kWh already spent",
              file=sys.stderr, flush=True)


def _run_tuner(cfg: StudyConfig, objective: Any, gate: Any, ledger: EnergyLedger,
               callback: StudyCallback, out: Path, attempt: int = 0, scheduler: Any = None) -> None:
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

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
            scheduler=scheduler,
            num_samples=cfg.max_trials or -1,
            max_concurrent_trials=cfg.max_concurrent_trials,
        ),
        run_config=tune.RunConfig(
            name="ray" if attempt == 0 else f"ray-resume-{attempt}",
            storage_path=str(out),
            stop=_stopper(cfg, ledger),
            # JSON only (Tune's result reader needs it): its CSV and TensorBoard loggers
            # would duplicate MLflow and trials.csv, and TensorBoardX drags torch into the driver.
            callbacks=[callback, JsonLoggerCallback()],
            verbose=0,
            # A retried trial would spend its energy twice for one result.
            failure_config=tune.FailureConfig(max_failures=0),
            # tuner.report(checkpoint=...): only the latest is needed, to resume after a pause
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    with _env("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1"):
        tuner.fit()


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` inside the block only."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _stopper(cfg: StudyConfig, ledger: EnergyLedger) -> Any:
    """The budget stopper, first so that it observes every result; then Pareto early stopping."""
    if cfg.early_stopping == "none":
        return BudgetStopper(ledger)
    from ray.tune.stopper import CombinedStopper

    from tuner.search.early_stopping import ParetoStopper

    return CombinedStopper(BudgetStopper(ledger), ParetoStopper(cfg.metric, cfg.mode, cfg.budget_kwh))


def _finish(result: TuneResult, tracker: Any, out: Path) -> None:
    from tuner.reporting import build_report

    try:
        write_csv(result.trials, out / TRIALS_FILE)
    except OutputWriteError as exc:  # a full disk: MLflow still gets the study's totals
        exc.result = result
        tracker.finish_study(result, [])
        raise
    state = read_json(out / STATE_FILE)
    state.update({"finished_at": time.time(), "total_energy_kwh": result.total_energy_kwh,
                  "overhead_kwh": result.overhead_kwh, "co2_kg": result.co2_kg,
                  "co2_counterfactual_kg": result.co2_counterfactual_kg,
                  **{k: v for k, v in result.carbon.items() if isinstance(v, (str, int, float))},
                  "finish_reason": result.finish_reason,
                  "config": _config_dump(result.config) if result.config is not None else None})
    try:
        write_json(out / STATE_FILE, redact_obj(state))  # what `greentune report DIR` rebuilds from
    except OutputWriteError as exc:
        exc.result = result
        tracker.finish_study(result, [out / TRIALS_FILE])
        raise
    artifacts = [out / TRIALS_FILE]
    try:
        artifacts += list(build_report(result, out).values())
    except Exception as exc:  # noqa: BLE001 - a report must not lose a finished study
        logger.warning("could not build the study report: %s", exc)
    tracker.finish_study(result, artifacts)
    trials, flushed = result.trials, getattr(tracker, "flushed_run_ids", None) or {}
    unbooked = trials["mlflow_run_id"].isna() if "mlflow_run_id" in trials else None
    late = {} if unbooked is None else {t: flushed[t] for t in trials.loc[unbooked, "trial_id"] if t in flushed}
    if late:  # queued trials MLflow took only at the end: name their child runs in the files too
        from tuner._mlflow_queue import book_run_ids

        book_run_ids(out, late)
        trials.loc[unbooked, "mlflow_run_id"] = trials.loc[unbooked, "trial_id"].map(late)


def trials_frame(ledger: EnergyLedger, param_names: list[str], metric: str) -> pd.DataFrame:
    """The ledger as a table: one row per trial, parameters first.

    Parameters come first and nothing after them may reuse their names: greentune's own
    columns are reserved names (``RESERVED_NAMES`` in the config) or carry a prefix.
    """
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
            "n_reports": info.pop("greentune_epochs", None),  # tuner.report() calls
            "error": redact_obj(info.pop("greentune_error", None)),
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


def _check_power_limits(cfg: StudyConfig) -> None:
    """``gpu_power_limit_w`` must be settable on the cluster's GPUs before any trial starts."""
    from tuner.energy.power_limit import PowerLimitError, check_on_cluster

    _ensure_ray(cfg.address)
    low, high = cfg.power_limit_range_w or (0.0, 0.0)
    try:
        check_on_cluster(low, high, cfg.resources_per_trial.gpu)
    except PowerLimitError as exc:
        raise ConfigError(str(exc)) from None


def _ensure_ray(address: str | None) -> None:
    import ray

    # Tune's own console tables would interleave with greentune's progress lines.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
             logging_level=logging.WARNING)
