"""Put a study's ``carbon:`` policy in front of its searcher.

``none`` leaves the searcher alone (CO2 is still accounted). ``threshold`` and
``flexible-start`` wrap it in :class:`~tuner.carbon.gate.CarbonGate`, planning on the
provider's forecast (or, with ``forecast: history``, on a forecast fitted on its own
history) for the work the study still has to do, estimated from the trials finished so
far; until one has, from the budget, the trial cap and the concurrency
(:func:`expected_work`). ``pause-resume`` gates launches like ``threshold`` and adds
:class:`~tuner.carbon.pause.CarbonPauseScheduler`, which pauses checkpointing trials
while the intensity is above the threshold. The deadline is counted from the moment the
study starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ray.tune.search import Searcher

from tuner.carbon.base import IntensityProvider

if TYPE_CHECKING:
    from tuner.config import StudyConfig
    from tuner.study.ledger import EnergyLedger


def gate_searcher(
    searcher: Searcher,
    provider: IntensityProvider,
    cfg: StudyConfig,
    ledger: EnergyLedger,
    study_start: datetime,
    notify: Callable[[str], None] | None = None,
) -> Searcher:
    """``searcher``, wrapped in a CarbonGate when the policy schedules launches; ``notify``
    hears its console lines (a wait starting, going on, ending)."""
    carbon = cfg.carbon
    if carbon.policy == "none":
        return searcher
    from tuner.carbon.forecast import (
        HISTORY_GUARD,
        HISTORY_MIN_SAVING,
        HISTORY_REPLAN,
        HistoryForecast,
    )
    from tuner.carbon.gate import CarbonGate
    from tuner.carbon.schedule import SchedulePolicy

    min_saving, confidence, guard = carbon.min_saving, None, None
    replan = timedelta(minutes=15)  # CarbonGate's default
    if carbon.forecast == "history":
        provider = HistoryForecast(provider)
        min_saving = max(min_saving, HISTORY_MIN_SAVING)
        confidence = carbon.confidence
        guard = HISTORY_GUARD  # extra re-checks of a wait under way (none by default)
        replan = HISTORY_REPLAN  # as benchmarks/carbon_shift.py replays it
    policy = SchedulePolicy(
        "threshold" if carbon.policy == "pause-resume" else carbon.policy,  # type: ignore[arg-type]
        level_g_per_kwh=carbon.threshold_g_per_kwh,
        percentile=carbon.threshold_percentile,
        min_saving=min_saving,
        confidence=confidence,
    )
    assert carbon.deadline_s is not None  # CarbonSettings requires it for a policy
    at_once = concurrency(cfg)
    assumed, basis = expected_work(cfg, at_once, driver_watts(cfg))
    return CarbonGate(
        searcher,
        provider,
        deadline=study_start + timedelta(seconds=carbon.deadline_s),
        policy=policy,
        work=_work_left(cfg, ledger, at_once),
        assumed_work=assumed,
        assumed_basis=basis,
        notify=notify,
        guard=guard,
        replan_every=replan,
    )


#: What the gate plans with when nothing says how long the study runs (GPU trials
#: without a power override, before their first trial ends).
FALLBACK_WORK = timedelta(hours=1)


def expected_work(cfg: StudyConfig, at_once: int, watts_per_core: float) -> tuple[timedelta, str]:
    """The study's expected wall time before any trial has finished, and how it was found.

    A study ends when its energy budget is spent (or its trial cap reached, or its space
    exhausted). Running ``n = min(concurrency, max_trials)`` trials at once, each drawing
    ``P = cpu x watts_per_core (+ gpu x the gpu override's watts)``, it spends the budget
    ``B`` in ``B / (n x P)``: that is the work planned with. It is the longest the study
    can run, so the gate may wait less than it could but never plans a start the study
    cannot finish from; once a trial finishes, the measured estimate
    (:func:`~tuner.carbon.gate.remaining_work`) replaces it. Without a power figure for
    the trial's GPUs there is no honest estimate and :data:`FALLBACK_WORK` is used.
    """
    trial = cfg.resources_per_trial
    gpu_override = cfg.energy.overrides.get("gpu")
    if trial.gpu > 0 and gpu_override is None:
        return FALLBACK_WORK, (f"{_h(FALLBACK_WORK)} h assumed: no power figure for GPU trials "
                               "until one finishes (energy.overrides.gpu gives one)")
    n = min(at_once, cfg.max_trials) if cfg.max_trials else at_once
    watts = trial.cpu * watts_per_core + (trial.gpu * gpu_override.watts if gpu_override else 0.0)
    if watts <= 0:
        return FALLBACK_WORK, f"{_h(FALLBACK_WORK)} h assumed: trials reserve no power"
    seconds = cfg.budget_kwh * 3.6e6 / (n * watts)
    work = timedelta(seconds=seconds)
    return work, (f"{_h(work)} h expected: budget {cfg.budget_kwh:g} kWh / ({n} trial(s) at once "
                  f"x {watts:.0f} W)")


def driver_watts(cfg: StudyConfig) -> float:
    """Watts per busy core on this machine (the energy settings' figure, else the TDP table's)."""
    from tuner.energy.factory import driver_watts_per_core

    return driver_watts_per_core(cfg.energy)


def _h(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:.2f}".rstrip("0").rstrip(".")


def pause_scheduler(
    provider: IntensityProvider, cfg: StudyConfig, ledger: EnergyLedger, study_start: datetime,
    notify: Callable[[str], None] | None = None,
) -> Any:
    """The Ray Tune scheduler that pauses trials for ``pause-resume``, else ``None`` (Tune's FIFO);
    ``notify`` hears its console lines (trials paused, still paused, resumed)."""
    carbon = cfg.carbon
    if carbon.policy != "pause-resume":
        return None
    from tuner.carbon.pause import CarbonPauseScheduler

    assert carbon.deadline_s is not None
    return CarbonPauseScheduler(
        provider,
        deadline=study_start + timedelta(seconds=carbon.deadline_s),
        level_g_per_kwh=carbon.threshold_g_per_kwh,
        percentile=carbon.threshold_percentile,
        work=_work_left(cfg, ledger, concurrency(cfg)),
        ledger=ledger,
        notify=notify,
    )


def _work_left(cfg: StudyConfig, ledger: EnergyLedger, at_once: int) -> Callable[[], timedelta | None]:
    """Wall time the study still needs, from the trials finished so far (``None``: unknown)."""
    from tuner.carbon.gate import remaining_work

    def work() -> timedelta | None:
        done = ledger.completed()
        durations = [float(e.info["duration_s"]) for e in done if e.info.get("duration_s")]
        return remaining_work(durations, trials_left(ledger, cfg.max_trials), at_once)

    return work


def trials_left(ledger: EnergyLedger, max_trials: int | None) -> int | None:
    """Trials the study may still start: the smaller of what ``max_trials`` and the energy
    budget (at the median completed trial's energy) allow; ``None`` when neither says."""
    limits = []
    if max_trials is not None:
        limits.append(max_trials - ledger.n_trials)
    expected = ledger.expected_trial_kwh
    if expected:
        limits.append(math.floor(max(ledger.budget_kwh - ledger.total_kwh, 0.0) / expected))
    return max(min(limits), 0) if limits else None


def concurrency(cfg: StudyConfig) -> int:
    """How many trials run at once: the config's cap, else what the Ray cluster's CPUs fit."""
    if cfg.max_concurrent_trials:
        return cfg.max_concurrent_trials
    import ray

    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    per_trial = cfg.resources_per_trial.cpu or 1.0
    return max(1, int(cpus // per_trial))


def gate_report(searcher: Any) -> dict[str, Any]:
    """The gate's figures (waits, plans) for the result, or nothing without a gate."""
    report = getattr(searcher, "report", None)
    return {k: v for k, v in report().items() if v is not None} if callable(report) else {}


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


__all__ = ["concurrency", "expected_work", "gate_report", "gate_searcher", "pause_scheduler", "trials_left", "utc"]
