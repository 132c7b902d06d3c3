"""Pareto-aware early stopping: stop a trial whose learning curve cannot reach the front.

A trial reports ``(energy so far, metric)`` as it goes. Extrapolating its recent progress
per kWh in a straight line (optimistic for the concave curves training produces), if no
energy it could still spend up to ``horizon_kwh`` puts it above the current front of
finished trials, and above where it already is, the rest of the trial is wasted energy.
What it reached so far still counts: a trial stopped at epoch ``k`` is the configuration
"train ``k`` epochs".
"""

from __future__ import annotations

from collections.abc import Sequence

MIN_REPORTS = 3


def should_stop(
    reports: Sequence[tuple[float, float]],
    front: Sequence[tuple[float, float]],
    horizon_kwh: float,
    mode: str = "max",
) -> bool:
    """Whether to stop a trial given its ``(kWh, metric)`` reports and finished ``(kWh, metric)`` trials."""
    if len(reports) < MIN_REPORTS:
        return False
    sign = 1.0 if mode == "max" else -1.0
    x_now, y_now = reports[-1][0], sign * reports[-1][1]
    x_then, y_then = reports[len(reports) // 2 - 1][0], sign * reports[len(reports) // 2 - 1][1]
    rate = (y_now - y_then) / (x_now - x_then) if x_now > x_then else 0.0
    if rate <= 0:
        return True  # flat or falling over its last half: more energy buys nothing
    if x_now >= horizon_kwh:
        return True
    finished = sorted((x, sign * y) for x, y in front)
    # The front is a step function of energy; the line beats it somewhere iff it does just
    # before one of its steps, or at the horizon.
    checkpoints = [x for x, _ in finished if x_now < x <= horizon_kwh] + [horizon_kwh]
    for x in checkpoints:
        reach = y_now + rate * (x - x_now)
        best_before = max((y for fx, y in finished if fx < x or (x == horizon_kwh and fx <= x)), default=None)
        if best_before is None or reach > best_before:
            return False
    return True
