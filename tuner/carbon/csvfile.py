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
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries, Signal
from tuner.carbon.series import StepFunction, last_step, resample, to_utc, window
from tuner.errors import CarbonDataWarning, ConfigError

_EM_TIME = "datetime (utc)"
_MISSING = frozenset({"", "nan", "na", "null", "none"})
#: A hole longer than this is refused: no step-held value can honestly stand for it.
MAX_GAP = pd.Timedelta(days=1)
_OFFSET = re.compile(r"(?:Z|[+-]\d\d:?\d\d)$", re.IGNORECASE)


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone; else a ConfigError naming ``carbon.csv_timezone``."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"carbon.csv_timezone: unknown time zone '{name}'; use an IANA name such as UTC, "
            "Europe/Berlin or America/New_York"
        ) from None
    return str(name)


def _pick_columns(columns: list[str], lifecycle: bool, where: str) -> tuple[str, str, str]:
    """(time column, value column, timezone of naive times) for a known layout."""
    lower = {c.strip().lower(): c for c in columns}
    if "time" in lower and "carbon intensity" in lower:
        return lower["time"], lower["carbon intensity"], "file"
    if _EM_TIME in lower:
        kind = "lca" if lifecycle else "direct"
        for key, col in lower.items():
            if key.startswith("carbon intensity") and re.search(rf"\({kind}\)\s*$", key):
                return lower[_EM_TIME], col, "UTC"
        raise ConfigError(
            f"{where}: Electricity Maps export without a 'Carbon Intensity ... ({kind})' column"
        )
    raise ConfigError(
        f"{where}: unrecognised CSV header {columns!r}; expected 'Time,Carbon Intensity' or an "
        "Electricity Maps export with 'Datetime (UTC)' and 'Carbon Intensity gCO₂eq/kWh (direct)'"
    )


def _rows(numbers: np.ndarray | list[int], limit: int = 5) -> str:
    """'row 4', 'rows 4 and 8', 'rows 4, 5, 9 and 3 more'."""
    numbers = [int(n) for n in numbers]
    if len(numbers) == 1:
        return f"row {numbers[0]}"
    if len(numbers) == 2:
        return f"rows {numbers[0]} and {numbers[1]}"
    shown = ", ".join(str(n) for n in numbers[:limit])
    return f"rows {shown}" + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


def _fmt(ts: pd.Timestamp) -> str:
    return f"{ts:%Y-%m-%d %H:%M}"


def _hours(span: pd.Timedelta) -> str:
    return f"{span / pd.Timedelta(hours=1):.2f}".rstrip("0").rstrip(".")


def _parse_times(raw: pd.Series, lines: np.ndarray, naive_tz: str, where: str,
                 tz_option: str) -> pd.DatetimeIndex:
    """UTC times, each row's own; any row that cannot be read is an error naming it."""
    has_offset = raw.str.contains(_OFFSET)
    if has_offset.any() and not has_offset.all():
        with_, without = lines[has_offset.to_numpy()][0], lines[~has_offset.to_numpy()][0]
        raise ConfigError(
            f"{where}: row {with_} gives a UTC offset and row {without} does not; give every "
            "time with an offset, or none (naive times are read in carbon.csv_timezone)"
        )
    times = pd.to_datetime(raw, format="mixed", errors="coerce", utc=bool(has_offset.any()))
    bad = times.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ConfigError(
            f"{where} row {lines[row]}: time '{raw.iloc[row]}' is not a date and time "
            "(e.g. 2020-06-01 09:00 or 2020-06-01T09:00+00:00)"
        )
    if times.dt.tz is not None:
        return pd.DatetimeIndex(times).tz_convert("UTC")
    always_first = np.ones(len(times), dtype=bool)
    skipped = times.dt.tz_localize(naive_tz, ambiguous=always_first, nonexistent="NaT").isna()
    if skipped.any():
        row = int(np.flatnonzero(skipped.to_numpy())[0])
        raise ConfigError(
            f"{where} row {lines[row]}: {_fmt(times.iloc[row])} does not exist in {tz_option} "
            f"'{naive_tz}' (the clocks go forward over it); give times in UTC or with an offset"
        )
    try:
        local = times.dt.tz_localize(naive_tz, ambiguous="infer")
    except ValueError:
        unsure = times.dt.tz_localize(naive_tz, ambiguous="NaT").isna().to_numpy()
        row = int(np.flatnonzero(unsure)[0])
        raise ConfigError(
            f"{where} row {lines[row]}: {_fmt(times.iloc[row])} is ambiguous in {tz_option} "
            f"'{naive_tz}' (the clocks go back and the file does not give that hour twice, in "
            "order); give times in UTC or with an offset"
        ) from None
    return pd.DatetimeIndex(local).tz_convert("UTC")


def read_intensity_csv(
    path: str | Path, *, timezone_name: str = "UTC", lifecycle: bool = False
) -> pd.Series:
    """Read a trace as a float Series (g/kWh) on a sorted, unique UTC index.

    Nothing is repaired in silence, because a replay or a plan built on a quietly mended
    trace would report savings the grid never offered. Unreadable files, unknown
    headers, unparseable, ambiguous or non-existent local times, text, infinite or
    negative values, rows that give one time two different values, and holes longer
    than a day raise :class:`~tuner.errors.ConfigError` naming the file, the row and the
    option. Empty values, repeated identical rows and shorter holes are read past with a
    :class:`~tuner.errors.CarbonDataWarning` that says so and what was done. Rows are
    numbered as lines of the file (the header is line 1).
    """
    path = Path(path)
    where = f"carbon.csv_path: {path}"
    if not path.is_file():
        raise ConfigError(f"carbon.csv_path: no such file {path}")
    check_timezone(timezone_name)
    try:
        frame = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ConfigError(
            f"{where} is empty; expected a header such as 'Time,Carbon Intensity' and one row "
            "per time"
        ) from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ConfigError(f"{where} is not a readable CSV: {' '.join(str(exc).split())}") from None
    time_col, value_col, naive_tz = _pick_columns(list(frame.columns), lifecycle, where)
    tz_option = "carbon.csv_timezone" if naive_tz == "file" else "the export's"
    naive_tz = timezone_name if naive_tz == "file" else naive_tz
    if frame.empty:
        raise ConfigError(f"{where} has a header but no data rows")
    lines = np.arange(len(frame)) + 2
    raw_values = frame[value_col].astype(str).str.strip()
    missing = raw_values.str.lower().isin(_MISSING).to_numpy()
    values = pd.to_numeric(raw_values.where(~missing), errors="coerce").to_numpy(dtype=float)
    text = ~missing & ~np.isfinite(values)
    if text.any():
        row = int(np.flatnonzero(text)[0])
        raise ConfigError(
            f"{where} row {lines[row]}: value '{raw_values.iloc[row]}' in column "
            f"'{value_col}' is not a number of gCO2/kWh"
        )
    negative = ~missing & (values < 0)
    if negative.any():
        row = int(np.flatnonzero(negative)[0])
        raise ConfigError(
            f"{where} row {lines[row]}: negative intensity {values[row]:g} gCO2/kWh in column "
            f"'{value_col}'; an intensity is >= 0"
        )
    times = _parse_times(frame[time_col].astype(str).str.strip(), lines, naive_tz, where, tz_option)
    if missing.any():
        warnings.warn(
            f"{where} {_rows(lines[missing])} of column '{value_col}' have no value; they are "
            "left out and the value before each holds until the next",
            CarbonDataWarning, stacklevel=2)
    keep = ~missing
    series = pd.Series(values[keep], index=times[keep])
    lines = lines[keep]
    series, lines = _one_value_per_time(series, lines, where)
    _check_gaps(series, lines, where)
    return series.astype(float)


def _one_value_per_time(series: pd.Series, lines: np.ndarray, where: str) -> tuple[pd.Series, np.ndarray]:
    order = np.argsort(series.index.asi8, kind="stable")
    series, lines = series.iloc[order], lines[order]
    repeated = series.index.duplicated(keep="first")
    if repeated.any():
        i = int(np.flatnonzero(repeated)[0])
        first = int(np.flatnonzero(series.index == series.index[i])[0])
        a, b = sorted((int(lines[first]), int(lines[i])))
        if series.iloc[first] != series.iloc[i]:
            raise ConfigError(
                f"{where} rows {a} and {b} both give {_fmt(series.index[i])} UTC, with different "
                f"values ({series.iloc[first]:g} and {series.iloc[i]:g}); keep one"
            )
        conflicts = series.groupby(level=0).nunique() > 1
        if conflicts.any():
            when = conflicts[conflicts].index[0]
            rows = sorted(int(x) for x in lines[series.index == when])
            raise ConfigError(
                f"{where} {_rows(rows)} all give {_fmt(when)} UTC, with different values; keep one"
            )
        warnings.warn(
            f"{where} rows {a} and {b} both give {_fmt(series.index[i])} UTC with the same value "
            f"({repeated.sum()} repeated row(s) in all); one of each is kept",
            CarbonDataWarning, stacklevel=3)
        series, lines = series[~repeated], lines[~repeated]
    return series, lines


def _check_gaps(series: pd.Series, lines: np.ndarray, where: str) -> None:
    """Warn of holes longer than one step; refuse those longer than :data:`MAX_GAP`."""
    if len(series) < 3:
        return
    step = last_step(series)
    spans = pd.Series(series.index).diff().iloc[1:].reset_index(drop=True)
    holes = np.flatnonzero((spans > 2 * step).to_numpy())
    for k, i in enumerate(holes):
        before, after = series.index[i], series.index[i + 1]
        hole = spans.iloc[i] - step
        what = (f"{where} rows {lines[i]} and {lines[i + 1]}: a {_hours(hole)} h gap in the data "
                f"({_fmt(before + step)} to {_fmt(after)} UTC; the file's step is {_hours(step)} h)")
        if hole > MAX_GAP:
            raise ConfigError(f"{what}; more than a day without data cannot be bridged: fill it "
                              "or split the file")
        if k < 3:
            warnings.warn(f"{what}; the value of row {lines[i]} is held across it"
                          + (f" ({len(holes) - 3} more gaps not listed)" if k == 2 and len(holes) > 3
                             else ""), CarbonDataWarning, stacklevel=3)


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
    is_file = True  # a file does not catch up: no API-style retry (see FallbackProvider)

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

    def check_covers(self, now: datetime, horizon: timedelta | None = None) -> None:
        """Refuse a trace that does not hold ``now``; warn when it ends before ``now + horizon``.

        A file does not catch up the way an API does, so a study whose present lies outside
        it would run on the static fallback from the first trial: that is a config error,
        found before any energy is spent. A file that ends before the deadline only limits
        what a plan can see; the warning says how far it reaches.
        """
        now_ts = to_utc(now)
        start, end = self._fn.start, self._fn.end
        if not start <= now_ts < end:
            raise ConfigError(
                f"carbon.csv_path: {self.path} covers {_fmt(start)} to {_fmt(end)} UTC, not now "
                f"({_fmt(now_ts)} UTC); a trace replays its own period (greentune carbon plan "
                "--at), a study needs one that covers its run"
            )
        if horizon is not None and now_ts + pd.Timedelta(horizon) > end:
            warnings.warn(
                f"carbon.csv_path: {self.path} ends at {_fmt(end)} UTC, before carbon.deadline "
                f"({_fmt(now_ts + pd.Timedelta(horizon))} UTC): plans see only its first "
                f"{_hours(end - now_ts)} h, and after its end the static figure is used",
                CarbonDataWarning, stacklevel=2)

    def _covered(self, start: pd.Timestamp, end: pd.Timestamp) -> None:
        if end <= self._fn.start or start >= self._fn.end:
            raise LookupError(
                f"{self.path.name} covers {_fmt(self._fn.start)} to {_fmt(self._fn.end)} UTC, "
                f"not {_fmt(start)} to {_fmt(end)}"
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
