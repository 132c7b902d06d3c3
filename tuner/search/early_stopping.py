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
) -> str | None:
    """Why to stop a trial given its ``(kWh, metric)`` reports and finished ``(kWh, metric)``
    trials, or ``None`` to let it run. The reason names the rule and the figures it used,
    so a user can see what the trial could not reach."""
    if len(reports) < MIN_REPORTS:
        return None
    sign = 1.0 if mode == "max" else -1.0
    x_now, y_now = reports[-1][0], sign * reports[-1][1]
    x_then, y_then = reports[len(reports) // 2 - 1][0], sign * reports[len(reports) // 2 - 1][1]
    rate = (y_now - y_then) / (x_now - x_then) if x_now > x_then else 0.0
    if rate <= 0:  # flat or falling over its last half: more energy buys nothing
        return (f"plateau: the metric went from {sign * y_then:.4g} to {sign * y_now:.4g} over its last "
                f"{len(reports) - len(reports) // 2 + 1} reports")
    if x_now >= horizon_kwh:
        return f"horizon: it spent {x_now:.3g} kWh, the most a trial may spend ({horizon_kwh:.3g} kWh)"
    finished = sorted((x, sign * y) for x, y in front)
    # The front is a step function of energy; the line beats it somewhere iff it does just
    # before one of its steps, or at the horizon.
    checkpoints = [x for x, _ in finished if x_now < x <= horizon_kwh] + [horizon_kwh]
    for x in checkpoints:
        reach = y_now + rate * (x - x_now)
        best_before = max((y for fx, y in finished if fx < x or (x == horizon_kwh and fx <= x)), default=None)
        if best_before is None or reach > best_before:
            return None
    best = max(finished, key=lambda point: point[1])
    return (f"front: at its rate of {sign * rate:.3g} per kWh it reaches at most {sign * (y_now + rate * (horizon_kwh - x_now)):.4g} "
            f"by {horizon_kwh:.3g} kWh, never above the front (best {sign * best[1]:.4g} at {best[0]:.3g} kWh)")


class ParetoEarlyStopping:
    """Applies :func:`should_stop` to each trial's ``tuner.report`` calls, as they arrive.

    Used by the study when its config sets ``early_stopping: pareto``; the study feeds it
    each trial's record from the ledger, so the energy is the trial's whole total (every
    run of a paused trial). A trial's curve is the ``(kWh, metric)`` of each new report
    (heartbeats that repeat the last report are skipped, as they would look like a
    plateau); the front is that of the trials that finished or were stopped, at what they
    reached. ``horizon_kwh`` is the most a trial could still spend: the study's budget.
    """

    def __init__(self, mode: str, horizon_kwh: float) -> None:
        self.mode, self.horizon_kwh = mode, horizon_kwh
        self.reports: dict[str, list[tuple[float, float]]] = {}
        self.front: list[tuple[float, float]] = []
        self.stopped: list[str] = []
        self._count: dict[str, int | None] = {}

    def observe(self, trial_id: str, n_reports: int | None, kwh: float, value: float | None,
                finished: bool = False, completed: bool = False) -> str | None:
        """Take a trial's latest state; why to stop it now, or ``None``."""
        curve = self.reports.setdefault(trial_id, [])
        if value is not None and n_reports != self._count.get(trial_id):
            self._count[trial_id] = n_reports
            curve.append((float(kwh), float(value)))
        if finished:
            self.reports.pop(trial_id)
            if completed and curve:
                self.front.append(curve[-1])
            return None
        reason = should_stop(curve, self.front, self.horizon_kwh, self.mode)
        if reason is not None:
            self.front.append(curve[-1])
            self.stopped.append(trial_id)
            self.reports.pop(trial_id)
            return f"pareto early stopping after report {n_reports}: {reason}"
        return None
