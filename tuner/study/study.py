"""A study: a config, its files, its ledger, its searcher and its tracker, run on Ray.

:meth:`Study.open` validates everything and builds what costs seconds (Ax, the carbon
provider, the MLflow run) before any trial spends energy, or takes over the books of a
study whose driver died. :meth:`Study.run` runs the trials on Ray Tune and returns the
:class:`TuneResult`. :func:`tune` is the two together.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tuner.config import ConfigError, StudyConfig, config_dump, load_config
from tuner.energy import J_PER_KWH, driver_watts_per_core
from tuner.errors import BudgetWarning, NoCompletedTrialWarning, OutputWriteError
from tuner.pareto import pareto_mask
from tuner.redact import protect_study, redact
from tuner.result import TuneResult
from tuner.search import make_searcher
from tuner.search.ax_searcher import quiet_ax_logging
from tuner.study.budget import BudgetGate, StudyStopper, budget_shortfall
from tuner.study.callback import StudyCallback
from tuner.study.files import StudyFiles, trials_frame
from tuner.study.launch import ensure_ray, run_ray_tune, shippable_objective
from tuner.study.ledger import EnergyLedger
from tuner.study.lock import StudyLock
from tuner.study.preflight import check_cluster, check_output_dir
from tuner.study.record import TrialRecord
from tuner.study.signals import ending_on_signals
from tuner.study.spool import SPOOL_DIR, read_last_words
from tuner.study.spool import clear as clear_spool
from tuner.tracking import close_unbooked_children, drop_partial_child, open_tracker
from tuner.tracking.sync import StudySync, restore_study, store_inside

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("tuner")
quiet_ax_logging()  # the report's surrogate imports Ax even for grid studies

# what must match for a resumed study to be the same study
SNAPSHOT_SHARE = 0.005  # the searcher's snapshot may cost this share of the trials' kWh it protects (of the tuner's 3 %: tuner.search.step_policy)
_SAME_STUDY_FIELDS = ("objective", "search_space", "metric", "mode", "strategy", "seed", "grid_resolution")
_INTERRUPTED = ("interrupted: the driver stopped while this trial ran; its energy up to its last "
                "recorded heartbeat is counted")


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
    cfg = load_config(config, budget_kwh=budget_kwh, max_trials=max_trials, strategy=strategy, seed=seed,
                      address=address, output_dir=output_dir)
    return Study.open(cfg, resume=resume).run(progress=progress)


class Study:
    """One study and everything that belongs to it. Build it with :meth:`open`."""

    def __init__(self, cfg: StudyConfig, files: StudyFiles, state: dict[str, Any], objective: Any,
                 carbon_provider: Any, searcher: Any, tracker: Any, ledger: EnergyLedger,
                 interrupted: list[TrialRecord]) -> None:
        self.config = cfg
        self.files = files
        self.state = state
        self.objective = objective
        self.carbon_provider = carbon_provider
        self.searcher = searcher
        self.tracker = tracker
        self.ledger = ledger
        self.interrupted = interrupted  # trials a dead driver left running, closed on resume
        self.param_names = list(cfg.search_space)
        self._snapshot_cpu_s = 0.0  # what the searcher's last snapshot cost
        self._snapshot_trials_kwh: float | None = None  # the trials' kWh when it was taken; None: none yet
        self.lock: StudyLock | None = None  # one live driver per study, held from open() to the end of run()
        self.zone_providers: dict[str, Any] = {}  # carbon.zones' providers, set by open()
        # the study's files copied to its MLflow run, so a new machine can resume it
        self.sync = StudySync(cfg.tracking_uri, str(state.get("mlflow_run_id") or ""), files.directory)

    @property
    def resumed(self) -> bool:
        return int(self.state.get("resumes") or 0) > 0

    @classmethod
    def open(cls, cfg: StudyConfig, resume: bool = False) -> Study:
        """Validate, then create the study's files and MLflow run (or reopen them to resume).

        Everything that can refuse the study does so here, before any trial energy is spent.
        """
        from tuner.carbon.placement import zone_providers
        from tuner.carbon.registry import build_provider

        protect_study(cfg.tracking_uri)
        files = StudyFiles(cfg.resolved_output_dir)
        check_output_dir(files.directory, resume)
        if resume and not files.state.exists():
            _restore_from_mlflow(cfg, files)  # a new machine: the books come back from the study's MLflow run
        previous = _previous_study(cfg, files, resume)
        check_cluster(cfg)  # the address answers and a trial fits: before any file or MLflow run exists
        objective = shippable_objective(cfg)
        carbon_provider = build_provider(cfg.carbon)  # reads a CSV now, not mid-study
        zones = zone_providers(cfg.carbon)  # carbon placement: one provider per zone, built now too
        searcher = make_searcher(cfg)  # builds Ax (seconds) before any trial energy is spent
        files.directory.mkdir(parents=True, exist_ok=True)
        lock = StudyLock.acquire(files.directory)
        try:
            previous = _previous_study(cfg, files, resume)  # again, under the lock: another driver may have begun
            study = cls._create(cfg, files, previous, objective, carbon_provider, searcher)
        except BaseException:
            lock.release()
            raise
        study.lock = lock
        study.zone_providers = zones
        study.sync.push()  # MLflow has the study from its start (or its resume) on
        return study

    @classmethod
    def _create(cls, cfg: StudyConfig, files: StudyFiles, previous: dict[str, Any] | None, objective: Any,
                carbon_provider: Any, searcher: Any) -> Study:
        tracker = open_tracker(cfg, files.directory)  # queues records on disk while MLflow is down
        if previous is None:
            run_id = tracker.start_study(cfg)
            state = {"name": cfg.study_name, "mlflow_run_id": run_id, "tracking_uri": cfg.tracking_uri,
                     "started_at": time.time(), "resumes": 0, "config": config_dump(cfg)}
        else:
            cfg = _with_stored_reference(cfg, previous)
            state = {**previous, "resumes": int(previous.get("resumes") or 0) + 1, "resumed_at": time.time()}
            tracker.resume_study(previous["mlflow_run_id"], state["resumes"])
        files.write_state(state)
        ensure_ray(cfg.address)
        ledger = EnergyLedger(cfg.budget_kwh, driver_watts_per_core(cfg.energy), cfg.metric,
                              lambda: searcher.cpu_seconds, cfg.energy.report_interval_s,
                              searcher.expected_step_cpu_seconds)
        interrupted = _restore_books(ledger, searcher, files) if previous is not None else []
        if previous is not None:
            files.write_ledger(ledger.to_json())  # what the spool said is in the books now
        clear_spool(files.directory / SPOOL_DIR)
        return cls(cfg, files, state, objective, carbon_provider, searcher, tracker, ledger, interrupted)

    # ------------------------------------------------------------------ running

    def run(self, progress: bool = True) -> TuneResult:
        """Run the trials until the budget, the trial cap or the space runs out."""
        from tuner.carbon.accounting import CarbonAccountant
        from tuner.carbon.placement import place_trials, zoned_accountant
        from tuner.carbon.wiring import gate_report, gate_searcher, pause_scheduler, utc

        cfg, ledger = self.config, self.ledger
        gate = BudgetGate(self.searcher, ledger, cfg.max_trials, cfg.max_consecutive_failures)
        study_start = float(self.state["started_at"])  # a resumed study keeps its start and its deadline
        accountant = CarbonAccountant(self.carbon_provider, cfg.pue, study_start=study_start)
        notify = _console if progress else None  # carbon waits and pauses, as they happen
        launcher = gate_searcher(gate, self.carbon_provider, cfg, ledger, utc(study_start), notify)
        # carbon placement (carbon.zones / carbon.placement): both return their input unchanged without zones
        accountant = zoned_accountant(accountant, cfg.carbon, self.zone_providers)
        launcher = place_trials(launcher, cfg, ledger, self.zone_providers, notify)
        pauser = pause_scheduler(self.carbon_provider, cfg, ledger, utc(study_start), notify)
        callback = StudyCallback(ledger, self.tracker, self.front_size, self.persist, 10.0 if progress else None,
                                 carbon=accountant, save_ledger=self.save_ledger)
        try:
            if self.resumed:
                self._record_restored(callback, progress)
            finishing = self.state.get("finishing_reason")  # its driver died writing the report: no trial runs
            if finishing is None:
                self._run_trials(launcher, callback, pauser)
            self._snapshot_if_behind()  # before the CO2 is summed: its CPU is overhead too
            carbon = {**_study_carbon(accountant, ledger), **gate_report(launcher), **gate_report(pauser)}
            if finishing is not None:
                finish_reason = str(finishing)
            elif gate.consecutive_failures is not None and not ledger.interrupted_by:
                # it stopped launching first; say so, not what followed
                self.state["consecutive_failures"] = gate.consecutive_failures
                finish_reason = gate.finish_reason or study_finish_reason(ledger, None, cfg.max_trials)
            else:
                finish_reason = study_finish_reason(ledger, gate.finish_reason, cfg.max_trials)
            result = self._finish(carbon, finish_reason)
        finally:
            self.sync.push()  # the final books, however the run ended
            if self.lock is not None:
                self.lock.release()
        if result.over_budget:
            logger.warning("the study ended over its energy budget: %s", result.over_budget_line())
        if result.completed.empty and not result.interrupted:
            warnings.warn(f"no trial completed ({finish_reason}); the Pareto front is empty",
                          NoCompletedTrialWarning, stacklevel=2)
        if progress:
            print(result.summary(), file=sys.stderr, flush=True)
        return result

    def _run_trials(self, launcher: Any, callback: StudyCallback, pauser: Any) -> None:
        """Ray Tune runs the trials; whatever ends it, every trial is booked and logged."""
        cfg, ledger = self.config, self.ledger
        shortfall = budget_shortfall(cfg, ledger)
        if shortfall:
            warnings.warn(shortfall, BudgetWarning, stacklevel=3)
        with ending_on_signals(ledger):
            try:
                run_ray_tune(cfg, self.objective, launcher, self._stopper(), callback, self.files.directory,
                             attempt=int(self.state["resumes"]), scheduler=pauser)
            except BaseException as exc:
                for record in ledger.close_unfinished():
                    callback.record(record)
                self.tracker.fail_study(f"{type(exc).__name__}: {exc}")
                raise
            for record in ledger.close_unfinished():
                callback.record(record)

    def _stopper(self) -> StudyStopper:
        if self.config.early_stopping == "none":
            return StudyStopper(self.ledger)
        from tuner.search.early_stopping import ParetoEarlyStopping

        return StudyStopper(self.ledger, ParetoEarlyStopping(self.config.mode, self.config.budget_kwh))

    def table(self) -> pd.DataFrame:
        """The ledger as the ``trials.csv`` table."""
        return trials_frame(self.ledger, self.param_names, self.config.metric)

    def front_size(self) -> int:
        """How many completed trials are on the Pareto front now (for the progress line)."""
        done = [r for r in self.ledger.completed() if self.config.metric in r.metrics]
        if not done:
            return 0
        metric = [r.metrics[self.config.metric] for r in done]
        return int(pareto_mask(metric, [r.energy_kwh for r in done], self.config.mode).sum())

    def save_ledger(self) -> None:
        """The ledger as running trials report energy; copied to MLflow every ``SYNC_EVERY_S``."""
        self._ensure_directory()
        self.files.write_ledger(self.ledger.to_json())
        self.sync.maybe_push()

    def _ensure_directory(self) -> None:
        """Recreate the output directory if it was deleted while the study runs.

        This driver holds every record in memory, so the study's files are written again
        from it (and its lock taken again) rather than lost: a study that kept spending
        into a deleted directory used to crash at its end, and a plain re-run then started
        afresh over whatever had survived.
        """
        if self.files.directory.is_dir():
            return
        self.files.directory.mkdir(parents=True, exist_ok=True)
        logger.warning("the study's output directory %s was deleted while the study ran; recreated it and wrote "
                       "the study's files again from the driver's records", self.files.directory)
        if self.lock is not None:
            self.lock.release()
            self.lock = StudyLock.acquire(self.files.directory)
        self.files.write_state(self.state)

    def persist(self) -> None:
        """After every finished trial: the ledger first (it holds the MLflow run id just
        logged), then the optimiser when due (a resume reconciles it with the ledger), then the
        table, then (every ``SYNC_EVERY_S`` at most) the copy in MLflow."""
        self._ensure_directory()
        self.files.write_ledger(self.ledger.to_json())
        if self._snapshot_due():
            self.save_searcher()
        self.files.write_trials(self.table())
        self.sync.maybe_push()

    def _snapshot_due(self) -> bool:
        """Whether the searcher's snapshot would cost at most :data:`SNAPSHOT_SHARE` of the trials since the last.

        Ax's snapshot rewrites the whole experiment, so its cost grows with the trials
        (0.4 CPU-s at 40 trials), and after every trial of a study of short trials it was a
        tenth of the study's kWh. The ledger is written after every trial and a resume
        rebuilds what a lagging snapshot lacks from it, so the snapshot waits until the work
        it protects is worth it; with long trials it is still written after every one.
        """
        if self._snapshot_trials_kwh is None:
            return True
        cost_kwh = self._snapshot_cpu_s * self.ledger.watts_per_core / J_PER_KWH
        return cost_kwh <= SNAPSHOT_SHARE * (self.ledger.trials_kwh - self._snapshot_trials_kwh)

    def _snapshot_if_behind(self) -> None:
        """At the end: the trials since a snapshot that waited, so a resume starts from all of them."""
        if self._snapshot_trials_kwh is None or self._snapshot_trials_kwh >= self.ledger.trials_kwh:
            return
        try:
            self.save_searcher()
        except OSError as exc:
            logger.error("could not write the optimiser's snapshot (%s); a resume rebuilds it from the ledger", exc)

    def save_searcher(self) -> None:
        """Write the optimiser's snapshot, its CPU charged to the tuner's overhead."""
        start = time.process_time()
        self.searcher.save_state(self.files.searcher)
        self._snapshot_cpu_s = time.process_time() - start
        self._snapshot_trials_kwh = self.ledger.trials_kwh
        self.searcher.cpu_seconds += self._snapshot_cpu_s  # the optimiser's upkeep is overhead too

    # ------------------------------------------------------------------ resuming

    def _record_restored(self, callback: StudyCallback, progress: bool) -> None:
        """Log what the dead driver could not: interrupted trials, and finished ones not yet in MLflow."""
        for record in self.ledger:
            if record.final and record.mlflow_run_id is None:
                try:  # the dead driver may have logged the run but not yet booked its id
                    drop_partial_child(self.tracker, record.trial_id)
                except Exception as exc:  # noqa: BLE001 - MLflow down: the queue takes the record
                    logger.warning("could not check MLflow for an earlier run of trial %s: %s", record.trial_id, exc)
                callback.record(record)
        try:
            unbooked = close_unbooked_children(self.tracker, {record.trial_id for record in self.ledger})
        except Exception as exc:  # noqa: BLE001 - MLflow down: the runs stay open, the books are right
            logger.warning("could not check MLflow for runs of trials the books never held: %s", exc)
        else:
            if unbooked:
                logger.warning("%d trial run(s) in MLflow started after the dead driver's last save and are in no "
                               "books (%s): ended as KILLED and tagged greentune.unbooked", len(unbooked),
                               ", ".join(unbooked))
        if progress:
            counts = self.ledger.counts()
            print(f"[greentune] resuming: {counts.get('completed', 0)} trials completed, "
                  f"{len(self.interrupted)} interrupted, {self.ledger.total_kwh:.3g} kWh already spent",
                  file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ finishing

    def _finish(self, carbon: dict[str, Any], finish_reason: str | None) -> TuneResult:
        """Write the study's files and MLflow totals once; a full disk still leaves MLflow the totals."""
        from tuner.reporting import build_report

        ledger, files = self.ledger, self.files
        self.state.update({
            "total_energy_kwh": ledger.total_kwh, "overhead_kwh": ledger.overhead_kwh,
            "co2_kg": carbon.get("co2_kg"), "co2_counterfactual_kg": carbon.get("co2_counterfactual_kg"),
            **{k: v for k, v in carbon.items() if isinstance(v, (str, int, float))},
            "finish_reason": finish_reason,
            "extra": {"searcher_cpu_s": self.searcher.cpu_seconds, "searcher_step_s": list(self.searcher.step_seconds)},
            "config": config_dump(self.config),
        })
        result = TuneResult.from_state(self.table(), self.config, self.state, output_dir=files.directory,
                                       searcher=self.searcher)
        if self._freeze_reference_point(result):
            result = TuneResult.from_state(self.table(), self.config, self.state, output_dir=files.directory,
                                           searcher=self.searcher)
        try:
            files.write_trials(result.trials)
        except OutputWriteError as exc:  # a full disk: MLflow still gets the study's totals
            exc.result = result
            self.tracker.finish_study(result, [])
            raise
        if self.ledger.interrupted_by:
            self.state["interrupted_at"] = time.time()  # not finished: `--resume` goes on from here
        else:
            # Finishing, not yet finished: a driver killed while it writes the report or
            # closes the MLflow run leaves a study that `--resume` finishes (no trial runs).
            self.state["finishing_reason"] = finish_reason
        try:
            files.write_state(self.state)  # what `greentune report DIR` rebuilds from
        except OutputWriteError as exc:
            exc.result = result
            self.tracker.finish_study(result, [files.trials])
            raise
        artifacts = [files.trials]
        try:
            artifacts += list(build_report(result, files.directory).values())
        except Exception as exc:  # noqa: BLE001 - a report must not lose a finished study
            logger.warning("could not build the study report: %s", exc)
        self.tracker.finish_study(result, artifacts)
        self._book_late_run_ids(result)
        clear_spool(files.directory / SPOOL_DIR)  # every trial is booked in ledger.json
        if not self.ledger.interrupted_by:
            self.state.pop("finishing_reason", None)
            self.state["finished_at"] = time.time()
            files.write_state(self.state)
        return result

    def _freeze_reference_point(self, result: TuneResult) -> bool:
        """Store the hypervolume's reference point with the study the first time it is known,
        so that a resumed study and a rebuilt report measure from the same corner."""
        from tuner.config import ReferencePoint
        from tuner.pareto import reference_point

        current = self.config.reference_point
        if current.metric is not None and current.energy_kwh is not None:
            return False
        metric, energy = reference_point(result)
        frozen = ReferencePoint(metric=current.metric if current.metric is not None else
                                (metric if math.isfinite(metric) else None),
                                energy_kwh=current.energy_kwh if current.energy_kwh is not None else energy)
        if frozen == current:
            return False
        self.config = self.config.model_copy(update={"reference_point": frozen})
        self.state["config"] = config_dump(self.config)
        return True

    def _book_late_run_ids(self, result: TuneResult) -> None:
        """Queued trials MLflow took only at the end: name their child runs in the files too."""
        trials, flushed = result.trials, getattr(self.tracker, "flushed_run_ids", None) or {}
        if "mlflow_run_id" not in trials:
            return
        unbooked = trials["mlflow_run_id"].isna()
        late = {t: flushed[t] for t in trials.loc[unbooked, "trial_id"] if t in flushed}
        if late:
            self.files.book_run_ids(late)
            trials.loc[unbooked, "mlflow_run_id"] = trials.loc[unbooked, "trial_id"].map(late)


def _console(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def study_finish_reason(ledger: EnergyLedger, gate_reason: str | None, max_trials: int | None) -> str:
    """Why the study ended; never ``None``.

    The gate names its reason when it refuses a trial, but Ray Tune stops asking it once
    ``num_samples`` (``max_trials``) trials were created, so a study capped by
    ``max_trials`` used to end with no reason at all. The ledger's books decide then.
    """
    if ledger.interrupted_by:
        return f"interrupted by {ledger.interrupted_by}"
    if ledger.stopped_at:
        return "energy budget spent"
    if gate_reason:
        return gate_reason
    if max_trials is not None and ledger.n_trials >= max_trials:
        return "max_trials reached"
    if ledger.exhausted:
        return "energy budget spent"
    return "Ray Tune ended the run with no trial left to start"


def _study_carbon(accountant: Any, ledger: EnergyLedger) -> dict[str, Any]:
    """Study CO2 totals and where the intensity came from; empty if accounting failed."""
    try:
        totals = accountant.study(list(ledger), ledger.overhead_kwh, time.time())
    except Exception as exc:  # noqa: BLE001 - CO2 accounting must not lose a finished study
        logger.warning("could not account the study's CO2: %s", exc)
        return {}
    provider = accountant.provider
    totals["carbon_provider"] = getattr(provider, "name", type(provider).__name__)
    totals["carbon_signal"] = provider.signal
    if accountant.fallback_reasons:
        totals["carbon_fallback"] = "; ".join(sorted(accountant.fallback_reasons))
    return totals


def _previous_study(cfg: StudyConfig, files: StudyFiles, resume: bool) -> dict[str, Any] | None:
    """The state of the study to resume, or ``None`` for a new one; refuses mismatches."""
    out = files.directory
    if not resume:
        if files.state.exists():
            state = _read_state_quietly(files)
            if state.get("finished_at"):  # nothing to resume: --resume would refuse it
                why = f" ({state['finish_reason']})" if state.get("finish_reason") else ""
                raise ConfigError(
                    f"output_dir '{out}' already holds a finished study{why}; choose another `name` or "
                    f"`output_dir` for a new one, or see its results with `greentune report {out}`"
                )
            raise ConfigError(
                f"output_dir '{out}' already holds a study that did not finish; resume it with `--resume` "
                "(tune(..., resume=True)), or choose another `name` or `output_dir`"
            )
        return None
    if not files.state.exists():
        raise ConfigError(f"nothing to resume: '{out}' holds no study ({files.state.name} missing)")
    state = files.read_state()
    if files.trials.exists() and not files.ledger.exists():
        raise ConfigError(f"cannot resume '{out}': {files.ledger.name} is missing but trials were recorded; "
                          "resuming would count their energy again")
    if state.get("finished_at"):
        why = f" ({state['finish_reason']})" if state.get("finish_reason") else ""
        raise ConfigError(f"the study in '{out}' already finished{why}; nothing to resume: "
                          f"choose another `name` or `output_dir` for a new one, or see its results with "
                          f"`greentune report {out}`")
    before = state.get("config") or {}
    now = config_dump(cfg)
    changed = [name for name in _SAME_STUDY_FIELDS if name in before and before[name] != now.get(name)]
    if changed:
        raise ConfigError(
            f"cannot resume '{out}': the config changed in {', '.join(changed)}; "
            "a resumed study must search the same space for the same objective"
        )
    return state


def _restore_from_mlflow(cfg: StudyConfig, files: StudyFiles) -> None:
    """``--resume`` with no study in ``output_dir``: pull its books from its MLflow run.

    Only when the MLflow store is not itself in ``output_dir`` (then there is nothing to
    pull, and the resume refuses as before).
    """
    if store_inside(cfg.tracking_uri, files.directory):
        return
    out = files.directory
    try:
        run_id = restore_study(cfg.tracking_uri, cfg.study_name, out, cfg.mlflow.experiment)
    except ConfigError as exc:
        raise ConfigError(f"nothing to resume: '{out}' holds no study ({files.state.name} missing), and {exc}") from None
    except Exception as exc:  # noqa: BLE001 - MLflow unreachable: the resume cannot go on, and says why
        raise ConfigError(redact(f"nothing to resume: '{out}' holds no study ({files.state.name} missing), and "
                                 f"MLflow at {cfg.tracking_uri} could not be asked for a copy: "
                                 f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")) from None
    _console(f"[greentune] restored the study's files into {files.directory} from MLflow run {run_id}")


def _with_stored_reference(cfg: StudyConfig, previous: dict[str, Any]) -> StudyConfig:
    """A resumed study measures its hypervolume from the reference point it stored."""
    from tuner.config import ReferencePoint

    stored = (previous.get("config") or {}).get("reference_point") or {}
    current = cfg.reference_point
    merged = ReferencePoint(metric=current.metric if current.metric is not None else stored.get("metric"),
                            energy_kwh=current.energy_kwh if current.energy_kwh is not None else stored.get("energy_kwh"))
    return cfg if merged == current else cfg.model_copy(update={"reference_point": merged})


def _read_state_quietly(files: StudyFiles) -> dict[str, Any]:
    """``study.json`` for an error message: an unreadable one reads as a study that did not finish."""
    try:
        state = files.read_state()
    except Exception:  # noqa: BLE001 - the refusal stands either way; only its advice differs
        return {}
    return state if isinstance(state, dict) else {}


def _restore_books(ledger: EnergyLedger, searcher: Any, files: StudyFiles) -> list[TrialRecord]:
    """Reload the ledger and the optimiser; close the trials the dead driver left running.

    What those trials wrote after the driver's last save (:mod:`tuner.study.spool`) is
    booked first: a result that came after the driver died, and the energy until then.
    """
    if files.ledger.exists():
        ledger.restore(files.read_ledger())
    for trial_id, (at, result) in read_last_words(files.directory / SPOOL_DIR).items():
        record = ledger.get(trial_id)
        if record is None or not record.final:  # None: started after the dead driver's last save
            ledger.observe(trial_id, result, at=at)
    interrupted = ledger.interrupt_unfinished(_INTERRUPTED)
    searcher.resume([(record.params, ledger.outcome(record.trial_id)) for record in ledger], files.searcher)
    return interrupted


__all__ = ["Study", "tune"]

