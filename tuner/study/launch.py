"""The study's Ray side: reach or start Ray, ship the objective, and run Ray Tune.

Ray Tune does the scheduling; the study plugs in its searcher (the budget gate), its
stopper, its callback and, for pause-resume, the carbon scheduler.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from tuner.carbon.placement import trainable_parts
from tuner.config import ConfigError, StudyConfig, resolve_objective
from tuner.energy import with_idle_baseline
from tuner.envvars import scoped_env
from tuner.study.spool import SPOOL_DIR
from tuner.trial import TrialSettings


def ensure_ray(address: str | None) -> None:
    """Connect to ``address`` (or ``RAY_ADDRESS``), else start a local Ray, once per process."""
    import ray

    # Tune's own console tables would interleave with greentune's progress lines.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
             logging_level=logging.WARNING)


def shippable_objective(cfg: StudyConfig) -> Any:
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


def check_power_limits(cfg: StudyConfig) -> None:
    """``gpu_power_limit_w`` must be settable on the cluster's GPUs before any trial starts."""
    from tuner.energy.power_limit import PowerLimitError, check_on_cluster

    ensure_ray(cfg.address)
    low, high = cfg.power_limit_range_w or (0.0, 0.0)
    try:
        check_on_cluster(low, high, cfg.resources_per_trial.gpu)
    except PowerLimitError as exc:
        raise ConfigError(str(exc)) from None


def _redacting_json_logger() -> Any:
    """Ray Tune's JSON result logger (its result reader needs ``result.json``), with secrets
    masked: a trial's error text and a fixed parameter may quote one."""
    from ray.tune.logger import JsonLoggerCallback

    from tuner.redact import redact_obj

    class RedactingJsonLogger(JsonLoggerCallback):
        def update_config(self, trial: Any, config: dict) -> None:  # params.json and params.pkl
            super().update_config(trial, redact_obj(config))

        def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
            super().log_trial_result(iteration, trial, redact_obj(result))

    return RedactingJsonLogger()


def run_ray_tune(cfg: StudyConfig, objective: Any, searcher: Any, stopper: Any, callback: Any,
                 out: Path, attempt: int = 0, scheduler: Any = None) -> None:
    """Run the study's trials with Ray Tune until the searcher says ``FINISHED``."""
    from ray import tune

    settings = TrialSettings(
        objective=objective, metric=cfg.metric, energy=with_idle_baseline(cfg.energy),
        report_interval_s=cfg.energy.report_interval_s, timeout_s=cfg.trial_timeout_s,
        spool_dir=str(Path(out).resolve() / SPOOL_DIR), driver_host=socket.gethostname(), driver_pid=os.getpid(),
    )
    (Path(out) / SPOOL_DIR).mkdir(parents=True, exist_ok=True)
    # run_trial and {cpu, gpu}; with carbon placement, a zone-pinning variant of each
    trial_fn, resources = trainable_parts(cfg)
    trainable = tune.with_resources(tune.with_parameters(trial_fn, settings=settings), resources)
    tuner = tune.Tuner(
        trainable,
        param_space={},
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=cfg.max_trials or -1,
            max_concurrent_trials=cfg.max_concurrent_trials,
            reuse_actors=cfg.reuse_trial_processes,
        ),
        run_config=tune.RunConfig(
            name="ray" if attempt == 0 else f"ray-resume-{attempt}",
            storage_path=str(out),
            stop=stopper,
            # JSON only (Tune's result reader needs it): its CSV and TensorBoard loggers
            # would duplicate MLflow and trials.csv, and TensorBoardX drags torch into the driver.
            callbacks=[callback, _redacting_json_logger()],
            verbose=0,
            # A retried trial would spend its energy twice for one result.
            failure_config=tune.FailureConfig(max_failures=0),
            # tuner.report(checkpoint=...): only the latest is needed, to resume after a pause
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    with scoped_env({"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}):
        tuner.fit()
