"""Put a study's ``carbon:`` policy in front of its searcher.

``none`` leaves the searcher alone (CO2 is still accounted). ``threshold`` and
``flexible-start`` wrap it in :class:`~tuner.carbon.gate.CarbonGate`, planning on the
provider's forecast (or, with ``forecast: history``, on a forecast fitted on its own
history) for the work the study still has to do, estimated from the trials finished so
far. ``pause-resume`` gates launches like ``threshold`` and adds
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
    from tuner.carbon.forecast import HISTORY_MIN_SAVING, HistoryForecast
    from tuner.carbon.gate import CarbonGate
    from tuner.carbon.schedule import SchedulePolicy

    min_saving = carbon.min_saving
    if carbon.forecast == "history":
        provider = HistoryForecast(provider)
        min_saving = max(min_saving, HISTORY_MIN_SAVING)
    policy = SchedulePolicy(
        "threshold" if carbon.policy == "pause-resume" else carbon.policy,  # type: ignore[arg-type]
        level_g_per_kwh=carbon.threshold_g_per_kwh,
        percentile=carbon.threshold_percentile,
        min_saving=min_saving,
    )
    assert carbon.deadline_s is not None  # CarbonSettings requires it for a policy
    return CarbonGate(
        searcher,
        provider,
        deadline=study_start + timedelta(seconds=carbon.deadline_s),
        policy=policy,
        work=_work_left(cfg, ledger),
        notify=notify,
    )


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
        work=_work_left(cfg, ledger),
        ledger=ledger,
        notify=notify,
    )


def _work_left(cfg: StudyConfig, ledger: EnergyLedger) -> Callable[[], timedelta | None]:
    """Wall time the study still needs, from the trials finished so far (``None``: unknown)."""
    from tuner.carbon.gate import remaining_work

    at_once = concurrency(cfg)

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


__all__ = ["concurrency", "gate_report", "gate_searcher", "pause_scheduler", "trials_left", "utc"]
