"""Searchers: Ray Tune ``Searcher`` implementations behind one ask/tell contract."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuner.search.base import GreentuneSearcher, Outcome
from tuner.search.baselines import GridSearcher, RandomSearcher

if TYPE_CHECKING:
    from tuner.config import StudyConfig

__all__ = ["GreentuneSearcher", "GridSearcher", "Outcome", "RandomSearcher", "make_searcher"]


def make_searcher(config: StudyConfig) -> GreentuneSearcher:
    """The searcher for ``config.strategy``. Ax is imported only for ``bo`` and ``sobol``."""
    common = dict(
        space=config.tunable, fixed=config.fixed, metric=config.metric, mode=config.mode, seed=config.seed
    )
    if config.strategy == "grid":
        return GridSearcher(**common, resolution=config.grid_resolution)
    if config.strategy == "random":
        return RandomSearcher(**common)
    from tuner.energy import driver_watts_per_core
    from tuner.search.ax_searcher import AxSearcher

    return AxSearcher(
        **common,
        method=config.strategy,
        metric_threshold=config.metric_threshold,
        initial_trials=config.initial_trials,
        budget_kwh=config.budget_kwh,
        max_trials=config.max_trials,
        watts_per_core=driver_watts_per_core(config.energy),  # what the driver's CPU is charged at
    )
