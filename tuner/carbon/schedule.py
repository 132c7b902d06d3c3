"""When to start work: pick a start time from an intensity forecast, never past the deadline.

Pure functions of (forecast, now, duration, deadline): no clock is read here, so the same
code plans a live study, a CLI ``carbon plan`` and a year-long replay in the benchmark.

Windows are compared by their *mean* intensity over the work's whole duration (the
rolling average the Carbon Aware SDK uses), not by the single lowest point: a one-step dip
followed by a peak is a bad place to start eight hours of work. Example::

    plan = plan_start(forecast, now, timedelta(hours=2), now + timedelta(hours=24))
    print(plan.start, f"{plan.saving_fraction:.0%}", plan.reason)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd

from tuner.carbon.base import IntensitySeries
from tuner.carbon.series import last_step

PolicyKind = Literal["none", "threshold", "flexible-start"]
POLICY_KINDS: tuple[str, ...] = ("none", "threshold", "flexible-start")


@dataclass(frozen=True)
class SchedulePolicy:
    """How to choose a start time.

    - ``none``: start now.
    - ``flexible-start``: the start whose window has the lowest mean intensity; wait only
      when that saves at least ``min_saving`` (a fraction) against starting now, so that
      an uncertain forecast (one built from history alone) does not make us wait for nothing;
      with ``confidence`` (and a :class:`SavingRisk` given to :func:`plan_start`), the
      saving must also clear the forecast's own past error at that lead time.
    - ``threshold``: the first time the intensity is at or under ``level_g_per_kwh``, or
      under the ``percentile`` (0-100) of the forecast up to the deadline; start now when
      the forecast never gets there in time.
    """

    kind: PolicyKind = "flexible-start"
    level_g_per_kwh: float | None = None
    percentile: float | None = None
    min_saving: float = 0.0
    confidence: float | None = None  # flexible-start: clear the forecast's past error (SavingRisk)

    def __post_init__(self) -> None:
        if self.confidence is not None and not 0.0 < self.confidence < 1.0:
            raise ValueError(f"policy.confidence is a fraction in (0, 1), got {self.confidence}")
        if self.kind not in POLICY_KINDS:
            raise ValueError(
                f"policy.kind must be one of {', '.join(POLICY_KINDS)}, got {self.kind!r}"
            )
        if not 0.0 <= self.min_saving < 1.0:
            raise ValueError(f"policy.min_saving is a fraction in [0, 1), got {self.min_saving}")
        if self.kind == "threshold":
            if (self.level_g_per_kwh is None) == (self.percentile is None):
                raise ValueError(
                    "policy 'threshold' needs exactly one of level_g_per_kwh or percentile"
                )
            if self.level_g_per_kwh is not None and not self.level_g_per_kwh >= 0:
                raise ValueError(f"policy.level_g_per_kwh must be >= 0, got {self.level_g_per_kwh}")
            if self.percentile is not None and not 0.0 <= self.percentile <= 100.0:
                raise ValueError(f"policy.percentile must be in [0, 100], got {self.percentile}")


@dataclass(frozen=True)
class SavingRisk:
    """How wrong a forecast's *saving* has been, by how far ahead the window starts.

    ``errors[i, j]`` is the realised minus the forecast saving of the window starting
    ``offsets_s[j]`` seconds after the origin, for the ``i``-th past origin (the same time
    of day on an earlier day, forecast only from what was known then). A plan that
    waits needs ``saving + lower(offset) > 0``: the saving must beat the forecast's own
    error at that lead time, not just be positive. ``lower`` is the ``1 - confidence``
    quantile of the errors, so with ``confidence=0.9`` a wait is expected to lose against
    starting at once on at most about one day in ten (if the past errors are like the
    future ones).
    """

    offsets_s: np.ndarray
    errors: np.ndarray
    confidence: float
    source: str = "past forecasts"
    min_samples: int = 7  # fewer past errors than this at a lead time: never wait for it

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.errors.ndim != 2 or self.errors.shape[1] != len(self.offsets_s):
            raise ValueError("errors must be (samples, offsets)")

    @property
    def samples(self) -> int:
        """Past origins measured (at the shortest lead)."""
        return int(self.errors.shape[0])

    def lower(self, starts_s: np.ndarray) -> np.ndarray:
        """The ``1 - confidence`` quantile of the saving's error at each start offset
        (interpolated between measured offsets; 0 at offset 0, where nothing is forecast)."""
        return self.quantile(starts_s, 1.0 - self.confidence)

    def quantile(self, starts_s: np.ndarray, level: float) -> np.ndarray:
        """The ``level`` quantile of the saving's error at each start offset (see ``lower``)."""
        with np.errstate(all="ignore"):
            q = np.nanquantile(self.errors, level, axis=0)
        enough = (~np.isnan(self.errors)).sum(axis=0) >= self.min_samples
        q = np.where(enough & ~np.isnan(q), q, -np.inf)  # unmeasured lead: never wait for it
        out = np.interp(starts_s, self.offsets_s, q, left=0.0, right=-np.inf)
        return np.where(np.asarray(starts_s) <= 0.0, 0.0, out)


@dataclass(frozen=True)
class StartPlan:
    """A chosen start. Intensities are means over the work's duration (gCO2/kWh):
    ``expected`` from ``start``, ``now`` had it started now; ``saving_fraction`` is
    ``1 - expected / now`` as the forecast sees it."""

    start: datetime
    expected_g_per_kwh: float
    now_g_per_kwh: float
    saving_fraction: float
    reason: str


def plan_start(
    series: IntensitySeries,
    now: datetime,
    duration: timedelta,
    deadline: datetime,
    policy: SchedulePolicy | None = None,
    risk: SavingRisk | None = None,
) -> StartPlan:
    """Choose when to start ``duration`` of work so that it ends by ``deadline``.

    With ``risk`` (flexible-start only), each later window is scored by its forecast
    saving plus the lower quantile of the forecast's past error at that lead time, and
    the plan waits only for the best such score above zero (and above ``min_saving``):
    a saving that the forecast's own error could erase is not worth waiting for.

    The start is always in ``[now, deadline - duration]``; when the work cannot fit before
    the deadline it starts now and the reason says so. Values before the first timestamp
    take the first value; the last value holds for one median step; windows past that are not
    considered (a short forecast cannot justify waiting beyond what it sees).
    """
    policy = policy or SchedulePolicy()
    _check_inputs(series, now, duration, deadline)
    curve = _Curve(series, now)
    d = duration.total_seconds()
    now_mean = float(curve.mean(np.array([0.0]), min(d, curve.end))[0])  # over what is seen
    latest = (deadline - now).total_seconds() - d

    def at(offset: float, mean: float, reason: str) -> StartPlan:
        saving = 1.0 - mean / now_mean if now_mean > 0 else 0.0
        return StartPlan(now + timedelta(seconds=float(offset)), float(mean), now_mean,
                         float(saving), reason)

    if latest < 0:
        return at(0.0, now_mean, f"start now: {_hours(d)} h of work cannot finish by the "
                                 f"deadline ({_hours(d + latest)} h away)")
    if d > curve.end:
        return at(0.0, now_mean, f"start now: the forecast covers {_hours(curve.end)} h, less "
                                 f"than the work's {_hours(d)} h, so it cannot justify waiting")
    if policy.kind == "none":
        return at(0.0, now_mean, "start now: scheduling policy is 'none'")
    latest_seen = min(latest, curve.end - d)
    starts = curve.candidate_starts(d, latest_seen)
    means = curve.mean(starts, d)
    if policy.kind == "threshold":
        return _threshold(curve, policy, starts, means, latest + d, at)
    if risk is not None:
        return _risk_aware(starts, means, now_mean, d, policy, risk, at)
    best = int(np.flatnonzero(means <= means.min() * (1 + 1e-12) + 1e-12)[0])  # earliest of ties
    saving = 1.0 - means[best] / now_mean if now_mean > 0 else 0.0
    if best == 0:
        return at(0.0, now_mean, "start now: no later window has a lower mean intensity")
    if saving < policy.min_saving:
        return at(0.0, now_mean, f"start now: the best window saves {saving:.1%}, under the "
                                 f"{policy.min_saving:.1%} margin")
    return at(starts[best], means[best],
              f"lowest mean intensity over {_hours(d)} h of work starts in "
              f"{_hours(starts[best])} h (saves {saving:.1%})")


def _risk_aware(starts: np.ndarray, means: np.ndarray, now_mean: float, d: float,
                policy: SchedulePolicy, risk: SavingRisk, at) -> StartPlan:
    saving = 1.0 - means / now_mean if now_mean > 0 else np.zeros_like(means)
    floor = saving + risk.lower(starts)
    floor[0] = 0.0  # starting now is what every saving is measured against
    best = int(np.flatnonzero(floor >= floor.max() - 1e-12)[0])
    conf = f"{risk.confidence:.0%}"
    if best == 0:
        top = int(np.argmax(saving))
        if top == 0:
            return at(0.0, now_mean, "start now: no later window has a lower mean intensity")
        return at(0.0, now_mean,
                  f"start now: the best window (in {_hours(starts[top])} h) saves "
                  f"{saving[top]:.1%} as forecast, but the forecast's error at that lead "
                  f"could erase it ({conf} confidence, {risk.samples} {risk.source})")
    if floor[best] < policy.min_saving:
        return at(0.0, now_mean, f"start now: the best window saves at least {floor[best]:.1%} "
                                 f"with {conf} confidence, under the {policy.min_saving:.1%} margin")
    return at(starts[best], means[best],
              f"lowest-risk window over {_hours(d)} h of work starts in {_hours(starts[best])} h: "
              f"saves {saving[best]:.1%} as forecast, at least {floor[best]:.1%} with {conf} "
              f"confidence ({risk.samples} {risk.source})")


def _threshold(curve: _Curve, policy: SchedulePolicy, starts: np.ndarray, means: np.ndarray,
               horizon: float, at) -> StartPlan:
    if policy.level_g_per_kwh is not None:
        limit, what = policy.level_g_per_kwh, f"{policy.level_g_per_kwh:g} g/kWh"
    else:
        limit = curve.percentile(policy.percentile, horizon)
        what = f"the {policy.percentile:g}th percentile ({limit:.0f} g/kWh)"
    under = np.flatnonzero(curve.point(starts) <= limit)
    if under.size == 0:
        return at(0.0, means[0], f"start now: intensity does not reach {what} before the "
                                 "latest start that meets the deadline")
    i = int(under[0])
    if starts[i] == 0.0:
        return at(0.0, means[0], f"start now: intensity is at or under {what}")
    return at(starts[i], means[i],
              f"intensity reaches {what} in {_hours(starts[i])} h")


class _Curve:
    """The series as a step function of seconds after ``now``, with its exact integral."""

    def __init__(self, series: IntensitySeries, now: datetime) -> None:
        values = series.values.dropna()
        t = (values.index - pd.Timestamp(now)).total_seconds().to_numpy(dtype=float, copy=True)
        v = values.to_numpy(dtype=float)
        hold = last_step(values).total_seconds()
        if t[-1] + hold <= 0:
            raise ValueError(f"series from {series.source!r} ends at "
                             f"{values.index[-1] + last_step(values)}, before now ({now}): "
                             "there is no forecast to plan with")
        keep = t <= 0
        if keep.any():  # the value in force at now replaces everything before it
            first = int(np.flatnonzero(keep)[-1])
            t, v = t[first:], v[first:]
            t[0] = 0.0
        elif t[0] > 0:
            t, v = np.concatenate([[0.0], t]), np.concatenate([[v[0]], v])
        self.end = float(t[-1] + hold)
        self.knots = t
        self.values = v
        self._edges = np.append(t, self.end)
        self._cum = np.concatenate([[0.0], np.cumsum(v * np.diff(self._edges))])

    def integral(self, x: np.ndarray) -> np.ndarray:
        """∫ intensity from now to ``x`` (seconds); exact, as the integral is piecewise linear."""
        return np.interp(x, self._edges, self._cum)

    def mean(self, starts: np.ndarray, d: float) -> np.ndarray:
        if d <= 0:
            return self.point(starts)
        return (self.integral(starts + d) - self.integral(starts)) / d

    def point(self, x: np.ndarray) -> np.ndarray:
        return self.values[np.searchsorted(self.knots, x, side="right") - 1]

    def candidate_starts(self, d: float, latest: float) -> np.ndarray:
        """Now, the latest start, and every start where the window's mean can turn:
        a window edge on a step boundary. The minimum of a step function's rolling mean is
        always at one of these, so the search is exact, not sampled."""
        kinks = np.concatenate([[0.0, latest], self.knots, self.knots - d])
        return np.unique(kinks[(kinks >= 0.0) & (kinks <= latest)])

    def percentile(self, q: float, horizon: float) -> float:
        """The ``q``-th percentile of the values in force over ``[now, horizon)``."""
        seen = self.values[self.knots < max(horizon, 1e-9)]
        return float(np.percentile(seen, q))


def _check_inputs(series: IntensitySeries, now: datetime, duration: timedelta,
                  deadline: datetime) -> None:
    for name, value in (("now", now), ("deadline", deadline)):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value}")
    if duration < timedelta(0):
        raise ValueError(f"duration must be >= 0, got {duration}")
    values = series.values.dropna()
    if values.empty:
        raise ValueError(f"series from {series.source!r} holds no values to plan with")
    if not isinstance(values.index, pd.DatetimeIndex) or values.index.tz is None:
        raise ValueError("series.values needs a tz-aware DatetimeIndex (UTC)")
    if not values.index.is_monotonic_increasing:
        raise ValueError("series.values index must be sorted")
    if (values < 0).any():
        when = values.index[np.flatnonzero(values.to_numpy() < 0)[0]]
        raise ValueError(f"series from {series.source!r} has a negative intensity "
                         f"({values[when]:g} g/kWh at {when}); an intensity is >= 0")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}".rstrip("0").rstrip(".")
