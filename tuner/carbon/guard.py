"""Re-checks made while a carbon wait is under way: stop waiting once it no longer pays.

A plan that waits is a bet on a forecast. The risk rule in :mod:`tuner.carbon.schedule`
prices the bet with the forecast's past errors, but a day whose error lies beyond
anything in that past (a windless evening the profile calls windy) loses far more than
the quantile allowed for. Each re-plan only compares the windows ahead with starting *now*,
so on such a day it keeps chasing a dip that recedes as the present climbs, and the loss
against starting at submission grows with every hour waited.

:class:`WaitGuard` adds two checks that look at what has happened since the wait began,
not only at the next forecast:

- **target reached**: the window starting now is expected to be at least as clean as the
  one the wait was for: take it, rather than bet again on a later one;
- **forecast failing**: the intensity observed since the wait began averages more than
  ``divergence`` above what the plan that started the wait forecast for that same span.
  The forecast is wrong today in the costly direction, and its later promises are made
  by the same model, so the study starts at once and the loss stops growing.

Both are pure functions of series and numbers, so the gate, the CLI and the replay in
``benchmarks/carbon_shift.py`` run the very same checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from tuner.carbon.series import StepFunction, to_utc


@dataclass(frozen=True)
class WaitGuard:
    """Which re-checks run while waiting (see the module docstring).

    ``divergence`` is a fraction (0.1: observed 10 % above forecast); ``None`` turns the
    forecast-failing check off. ``take_target`` turns the target-reached check on.
    """

    divergence: float | None = None
    take_target: bool = True

    def __post_init__(self) -> None:
        if self.divergence is not None and not self.divergence >= 0.0:
            raise ValueError(f"guard.divergence must be a fraction >= 0, got {self.divergence}")


def forecast_miss(planned: pd.Series, observed: pd.Series, since: datetime,
                  now: datetime) -> float | None:
    """How far the observed mean over ``[since, now)`` sits above the planned one, as a
    fraction of the planned (0.2: 20 % higher); ``None`` when either series does not
    cover that span, so no verdict is drawn from a part of it."""
    start, end = to_utc(since), to_utc(now)
    if end <= start or planned.dropna().empty or observed.dropna().empty:
        return None
    plan_fn, seen_fn = StepFunction(planned), StepFunction(observed)
    span = float((end - start).value)
    if plan_fn.covered(start, end) < span or seen_fn.covered(start, end) < span:
        return None
    expected = plan_fn.mean(start, end)
    if not expected > 0:
        return None
    return seen_fn.mean(start, end) / expected - 1.0


def stop_reason(guard: WaitGuard, *, target_g: float, now_g: float,
                miss: float | None) -> str | None:
    """Why a wait under way should end now, or ``None`` to let the re-plan decide.

    ``target_g``: the mean intensity the wait was for (the plan that started it);
    ``now_g``: the expected mean of the window starting now, from the latest forecast;
    ``miss``: :func:`forecast_miss` since the wait began.
    """
    if guard.take_target and now_g <= target_g:
        return (f"start now: the window starting now ({now_g:.0f} g/kWh expected) is as "
                f"clean as the one the wait was for ({target_g:.0f} g/kWh)")
    if guard.divergence is not None and miss is not None and miss > guard.divergence:
        return (f"start now: since the wait began the intensity has been {miss:.0%} above "
                f"its forecast (more than {guard.divergence:.0%}), so later promises from "
                "the same forecast are not worth waiting for")
    return None
