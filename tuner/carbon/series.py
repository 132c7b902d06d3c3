"""Step-held intensity series: exact time-weighted means and resampling.

A series' value holds from its timestamp until the next one, so the mean over any
interval is an integral of a step function, not an average of the samples that happen to
fall inside it. Everything here computes that integral exactly; providers, accounting and
resampling all share it so there is one definition of "the intensity over a period".
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd


def to_utc(when: datetime | pd.Timestamp | str, naive_tz: str = "UTC") -> pd.Timestamp:
    """A tz-aware UTC Timestamp; a naive input is read in ``naive_tz``."""
    ts = pd.Timestamp(when)
    if ts.tzinfo is None:
        ts = ts.tz_localize(naive_tz)
    return ts.tz_convert("UTC")


def last_step(values: pd.Series) -> pd.Timedelta:
    """How long the final value holds: the median spacing (1 h for a single point)."""
    if len(values) < 2:
        return pd.Timedelta(hours=1)
    ns = pd.DatetimeIndex(values.index).as_unit("ns").asi8
    return pd.Timedelta(int(np.median(np.diff(ns))), unit="ns")


class StepFunction:
    """The integral of a step-held series, for exact means over arbitrary intervals.

    The final value holds for one median step past the last timestamp; before the first
    timestamp and after that end, the series is undefined and means cover only the
    defined part (``covered`` says how much of an interval that is).
    """

    def __init__(self, values: pd.Series) -> None:
        if values.empty:
            raise ValueError("an intensity series needs at least one value")
        clean = values.dropna().sort_index()
        if clean.empty:
            raise ValueError("an intensity series has only missing values")
        self._t = pd.DatetimeIndex(clean.index).as_unit("ns").asi8.astype(np.float64)
        self._v = clean.to_numpy(dtype=np.float64)
        self._end = self._t[-1] + last_step(clean).value
        edges = np.append(self._t[1:], self._end)
        self._cum = np.concatenate([[0.0], np.cumsum(self._v * (edges - self._t))])
        self.start = pd.Timestamp(int(self._t[0]), tz="UTC")
        self.end = pd.Timestamp(int(self._end), tz="UTC")

    def _integral(self, x: np.ndarray) -> np.ndarray:
        x = np.clip(x, self._t[0], self._end)
        i = np.clip(np.searchsorted(self._t, x, side="right") - 1, 0, len(self._t) - 1)
        return self._cum[i] + self._v[i] * (x - self._t[i])

    def integral(self, start: pd.Timestamp, end: pd.Timestamp) -> float:
        """∫ intensity dt over [start, end), in g/kWh x nanoseconds (defined part only)."""
        a, b = self._integral(np.array([start.value, end.value], dtype=np.float64))
        return float(b - a)

    def covered(self, start: pd.Timestamp, end: pd.Timestamp) -> float:
        """Nanoseconds of [start, end) on which the series is defined."""
        lo, hi = max(start.value, self._t[0]), min(end.value, self._end)
        return max(0.0, float(hi - lo))

    def mean(self, start: pd.Timestamp, end: pd.Timestamp) -> float:
        """Time-weighted mean over [start, end); NaN where the series is undefined."""
        span = self.covered(start, end)
        if span <= 0:
            if start == end and self._t[0] <= start.value < self._end:
                return float(self._v[np.searchsorted(self._t, start.value, "right") - 1])
            return float("nan")
        return self.integral(start, end) / span

    def window_means(self, starts_ns: np.ndarray, width_ns: float) -> np.ndarray:
        """Mean over ``[start, start + width)`` for each start (ns since the epoch); NaN
        where a window reaches outside the series, so no mean is built on a part of it."""
        starts = np.asarray(starts_ns, dtype=np.float64)
        inside = (starts >= self._t[0]) & (starts + width_ns <= self._end)
        if width_ns <= 0:
            i = np.clip(np.searchsorted(self._t, starts, side="right") - 1, 0, len(self._t) - 1)
            return np.where(inside, self._v[i], np.nan)
        integral = self._integral(starts + width_ns) - self._integral(starts)
        return np.where(inside, integral / width_ns, np.nan)

    def means(self, edges: pd.DatetimeIndex) -> np.ndarray:
        """Time-weighted mean in each bucket between consecutive ``edges``."""
        x = pd.DatetimeIndex(edges).as_unit("ns").asi8.astype(np.float64)
        integral = np.diff(self._integral(x))
        covered = np.diff(np.clip(x, self._t[0], self._end))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(covered > 0, integral / covered, np.nan)


def resample(values: pd.Series, step: timedelta | str) -> pd.Series:
    """Re-express a step-held series on a regular grid of ``step``.

    Coarser steps get the exact time-weighted mean of each bucket; finer steps repeat the
    value in force. Buckets start on multiples of ``step`` since the Unix epoch (so 1 h
    buckets start on the hour) and cover exactly the span the input covers.
    """
    step = pd.Timedelta(step)
    if step <= pd.Timedelta(0):
        raise ValueError(f"step: must be positive, got {step}")
    fn = StepFunction(values)
    first = fn.start.floor(step)
    edges = pd.date_range(first, fn.end.ceil(step), freq=step)
    if len(edges) < 2:
        edges = pd.DatetimeIndex([first, first + step])
    means = fn.means(edges)
    return pd.Series(means, index=edges[:-1], name=values.name).dropna()


def window(values: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """The part of a step-held series over [start, end), with the value in force at
    ``start`` re-stamped at ``start`` so the result describes the whole interval."""
    values = values.sort_index()
    inside = values[(values.index >= start) & (values.index < end)]
    before = values[values.index < start]
    if len(before) and (inside.empty or inside.index[0] > start):
        # the value in force at ``start`` only counts if it still holds there
        if inside.empty and start >= before.index[-1] + last_step(values):
            return inside
        head = pd.Series([before.iloc[-1]], index=pd.DatetimeIndex([start]))
        inside = pd.concat([head, inside])
    return inside.astype(float)
