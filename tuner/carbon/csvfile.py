"""CSV provider: intensity traces from files, for replays, benchmarks and offline sites.

Two layouts are recognised from the header:

- ``Time,Carbon Intensity`` (e.g. the "Let's Wait Awhile" traces); naive timestamps are
  read in ``timezone`` (UTC by default).
- The Electricity Maps data-portal export: ``Datetime (UTC)``, ``Carbon Intensity
  gCO₂eq/kWh (direct)`` and ``... (LCA)``; ``lifecycle=True`` picks the LCA column.

``forecast`` returns the recorded values: replaying a trace as its own forecast is the
"perfect forecast" case, and is labelled so in the source.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries, Signal
from tuner.carbon.series import StepFunction, resample, to_utc, window

_EM_TIME = "datetime (utc)"


def _pick_columns(columns: list[str], lifecycle: bool, path: Path) -> tuple[str, str, str]:
    """(time column, value column, timezone of naive times) for a known layout."""
    lower = {c.strip().lower(): c for c in columns}
    if "time" in lower and "carbon intensity" in lower:
        return lower["time"], lower["carbon intensity"], "file"
    if _EM_TIME in lower:
        kind = "lca" if lifecycle else "direct"
        for key, col in lower.items():
            if key.startswith("carbon intensity") and re.search(rf"\({kind}\)\s*$", key):
                return lower[_EM_TIME], col, "UTC"
        raise ValueError(
            f"{path}: Electricity Maps export without a 'Carbon Intensity ... ({kind})' column"
        )
    raise ValueError(
        f"{path}: unrecognised CSV header {columns!r}; expected 'Time,Carbon Intensity' or an "
        "Electricity Maps export with 'Datetime (UTC)' and 'Carbon Intensity gCO₂eq/kWh (direct)'"
    )


def read_intensity_csv(
    path: str | Path, *, timezone_name: str = "UTC", lifecycle: bool = False
) -> pd.Series:
    """Read a trace as a float Series (g/kWh) on a sorted, unique UTC index."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"carbon.csv_path: no such file {path}")
    frame = pd.read_csv(path, encoding="utf-8-sig")
    time_col, value_col, naive_tz = _pick_columns(list(frame.columns), lifecycle, path)
    naive_tz = timezone_name if naive_tz == "file" else naive_tz
    try:
        times = pd.to_datetime(frame[time_col], format="mixed")
    except ValueError:  # rows with different UTC offsets: convert each to UTC
        times = pd.to_datetime(frame[time_col], format="mixed", utc=True)
    if times.dt.tz is None:
        times = times.dt.tz_localize(naive_tz, ambiguous="infer", nonexistent="shift_forward")
    values = pd.to_numeric(frame[value_col], errors="coerce")
    series = pd.Series(values.to_numpy(), index=pd.DatetimeIndex(times).tz_convert("UTC"))
    series = series[~series.index.duplicated(keep="last")].sort_index().dropna()
    if series.empty:
        raise ValueError(f"{path}: no numeric values in column {value_col!r}")
    return series.astype(float)


class CsvProvider(IntensityProvider):
    """Intensity read from a CSV trace, optionally resampled to ``step``.

    ``clock`` says what "now" is for ``current()``: the wall clock by default, or a
    replay clock that walks through the trace.

    Example::

        p = CsvProvider("/data/ger_ci.csv", step="1h")
        p.history(datetime(2020, 6, 1, tzinfo=timezone.utc),
                  datetime(2020, 6, 2, tzinfo=timezone.utc)).values   # 24 hourly means
    """

    name = "csv"

    def __init__(
        self,
        path: str | Path,
        *,
        step: timedelta | str | None = None,
        timezone_name: str = "UTC",
        lifecycle: bool = False,
        signal: Signal = "average",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        values = read_intensity_csv(path, timezone_name=timezone_name, lifecycle=lifecycle)
        self.values = resample(values, step) if step is not None else values
        self.signal = signal
        self.path = Path(path)
        self.source = f"csv:{self.path.name}"
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._fn = StepFunction(self.values)

    def _covered(self, start: pd.Timestamp, end: pd.Timestamp) -> None:
        if end <= self._fn.start or start >= self._fn.end:
            raise LookupError(
                f"{self.source} covers {self._fn.start} to {self._fn.end}, not {start} to {end}"
            )

    def current(self) -> IntensityReading:
        now = to_utc(self._clock())
        self._covered(now, now + pd.Timedelta(1))
        value = self._fn.mean(now, now)
        return IntensityReading(now.to_pydatetime(), value, self.source, self.signal)

    def history(self, start: datetime, end: datetime) -> IntensitySeries:
        start_ts, end_ts = to_utc(start), to_utc(end)
        self._covered(start_ts, end_ts)
        return IntensitySeries(window(self.values, start_ts, end_ts), self.source, self.signal)

    def forecast(self, start: datetime, end: datetime) -> IntensitySeries:
        series = self.history(start, end)
        return IntensitySeries(
            series.values, f"{self.source} (recorded values as forecast)", self.signal
        )
