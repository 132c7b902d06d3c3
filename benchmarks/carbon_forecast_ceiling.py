"""How much of the oracle's saving can *any* linear use of history reach? (prints figures)

A ceiling check for the history-only schedule in ``carbon_shift.py``. For each day of the
year and each later start ``s`` within the 24 h deadline, the target is the realised
saving ``1 - mean(window at s) / mean(window now)``. A least-squares model per ``s`` maps
features known at submission (the last day's values against the recent profile, the
recent profile's own predicted saving, the weekday, the week's level) to that saving; the
schedule starts at the ``s`` with the highest predicted saving, or now if none is > 0.

- "in-sample": fitted on the very year it is scored on, so it cheats; if even this
  stays under half the oracle, no linear history forecast will get there.
- "2-fold": fitted on one half of the year, scored on the other (ridge, lambda 1).

Hourly means of the trace; the oracle here is the best whole-hour start. Run::

    python benchmarks/carbon_forecast_ceiling.py            # the DE/FR cases under half
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from tuner.carbon.csvfile import CsvProvider
from tuner.carbon.series import resample

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from carbon_shift import DEFAULT_TRACES, data_dir  # noqa: E402

CASES = (("DE", 9), ("FR", 0), ("DE", 17), ("FR", 9))


def design(y: np.ndarray, i: int, day: pd.Timestamp, work: int) -> tuple[np.ndarray, np.ndarray]:
    """(features known at hour ``i``, realised saving of each later start)."""
    kernel = np.ones(work) / work
    actual = np.convolve(y[i:i + 24], kernel, "valid")
    profile = np.mean([y[i - 24 * d:i - 24 * d + 24] for d in range(1, min(14, i // 24) + 1)], axis=0)
    routine = np.convolve(profile, kernel, "valid")
    last = y[i - 24:i]
    week = y[i - 168:i].mean()
    x = np.concatenate([[1.0, last[-1] / last.mean()], last[[-1, -3, -6, -12, -24]] / profile.mean(),
                        1 - routine / routine[0], np.eye(7)[day.day_of_week],
                        [week / profile.mean(), last[-1] / week]])
    return x, 1 - actual / actual[0]


def shares(y: np.ndarray, index: pd.DatetimeIndex, hour: int, work: int, year: int) -> tuple[float, float, float]:
    days = pd.date_range(f"{year}-01-01", f"{year}-12-31", freq="D", tz="UTC")
    rows = [design(y, index.get_loc(d + pd.Timedelta(hours=hour)), d, work) for d in days]
    x = np.array([r[0] for r in rows])
    saving = np.array([r[1] for r in rows])
    oracle = saving.max(axis=1).mean()

    def realised(pred: np.ndarray) -> float:
        pred[:, 0] = 0.0
        return float(saving[np.arange(len(saving)), pred.argmax(axis=1)].mean())

    in_sample = realised(x @ np.linalg.lstsq(x, saving, rcond=None)[0])
    half, pred = len(x) // 2, np.zeros_like(saving)
    for train, test in ((slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))):
        a = x[train]
        pred[test] = x[test] @ np.linalg.solve(a.T @ a + np.eye(x.shape[1]), a.T @ saving[train])
    return oracle, in_sample, realised(pred)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--year", type=int, default=2020)
    args = parser.parse_args(argv)
    root = data_dir(args.data_dir)
    print(f"{'trace':<6}{'submit':>7}{'work':>6} {'oracle':>7} {'in-sample':>10} {'share':>6} "
          f"{'2-fold':>7} {'share':>6}")
    for name, hour in CASES:
        series = resample(CsvProvider(root / DEFAULT_TRACES[name][0]).values, "1h").asfreq("1h")
        series = series.interpolate()
        for work in (1, 4, 8):
            oracle, fit, cv = shares(series.to_numpy(), series.index, hour, work, args.year)
            print(f"{name:<6}{hour:>5}:00{work:>5}h {oracle:>7.1%} {fit:>10.1%} {fit / oracle:>6.0%} "
                  f"{cv:>7.1%} {cv / oracle:>6.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
