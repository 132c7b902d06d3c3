"""Carbon-aware start shifting replayed over a year of real intensity (prints figures; not a test).

Every day of ``--year`` a study of N hours is submitted at a fixed hour with a 24 h
deadline. Schedules compared against starting at once (run-now):

- oracle: the best contiguous window, by brute force over the trace's own grid (written
  independently of ``plan_start``, so it also checks the planner);
- perfect: ``plan_start`` on the recorded values as forecast;
- history: ``plan_start`` on :class:`HistoryForecast` (``--forecaster``: by default
  :class:`FittedForecaster`, fitted on the history before submission only) with the
  ``--margin`` (default :data:`HISTORY_MIN_SAVING`);
- naive: "yesterday's curve is today's forecast", no margin (the issue's strawman);
- gate (with ``--gate``): the history policy as :class:`CarbonGate` runs it live, polled
  every 15 minutes on a simulated clock and re-planning hourly with the history so far.

Savings are the mean over days of ``1 - CO2(policy) / CO2(run-now)``; "share" is the
policy's mean saving over the oracle's. Run::

    python benchmarks/carbon_shift.py                         # DE and FR 2020 traces
    python benchmarks/carbon_shift.py --csv my.csv --hours 9,17
    python benchmarks/carbon_shift.py --months 7-12 --forecaster profile --margin 0.02

The data folder is ``--data-dir``, else ``$GREENTUNE_DATA``, else ``../shared/data``
relative to the repository.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from ray.tune.search import Searcher

from tuner.carbon.csvfile import CsvProvider
from tuner.carbon.forecast import (
    HISTORY_MIN_SAVING,
    FittedForecaster,
    HistoryForecast,
    ProfileForecaster,
)
from tuner.carbon.gate import CarbonGate
from tuner.carbon.schedule import SchedulePolicy, plan_start
from tuner.carbon.series import StepFunction

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRACES = {"DE": ("carbon/ger_ci.csv", (9, 17)), "FR": ("carbon/fr_ci.csv", (9, 0))}
DEADLINE = timedelta(hours=24)
SCHEDULES = ("oracle", "perfect", "history", "naive", "gate")
FORECASTERS = {"fitted": FittedForecaster, "profile": ProfileForecaster}  # history's
POLL = timedelta(minutes=15)
REPLAN = timedelta(hours=1)


class Launch(Searcher):
    """Stands for the study's searcher: always ready to launch."""

    def suggest(self, trial_id: str) -> dict:
        return {}


class SimClock:
    def __init__(self, now) -> None:
        self.now = now

    def __call__(self):
        return self.now


def gate_start(provider, now, work: timedelta, deadline, margin: float) -> pd.Timestamp:
    """When CarbonGate, polled every 15 minutes, lets the study's first trial launch."""
    clock = SimClock(now.to_pydatetime())
    gate = CarbonGate(Launch(), provider, deadline=deadline.to_pydatetime(), clock=clock,
                      policy=SchedulePolicy(min_saving=margin),
                      work=lambda: work, replan_every=REPLAN)
    while gate.suggest("trial") is None:
        clock.now += POLL
    return pd.Timestamp(clock.now)


@dataclass
class CaseResult:
    trace: str
    hour: int
    work_h: int
    saving: dict[str, float]  # mean saving vs run-now, per schedule
    deadline_met: float  # share of (day, schedule) pairs that ended by the deadline
    days: int

    def share(self, schedule: str) -> float:
        """The schedule's mean saving as a share of the oracle's."""
        oracle = self.saving["oracle"]
        return self.saving.get(schedule, math.nan) / oracle if oracle > 0 else math.nan


def data_dir(flag: str | None) -> Path:
    return Path(flag or os.environ.get("GREENTUNE_DATA") or REPO.parent / "shared" / "data")


def oracle_saving(fn: StepFunction, grid: pd.DatetimeIndex, now: pd.Timestamp, work: timedelta) -> tuple[float, float]:
    """(run-now mean, best window mean) by brute force over every grid start in the deadline."""
    starts = grid[(grid >= now) & (grid <= now + DEADLINE - work)]
    means = [fn.mean(s, s + work) for s in starts]
    return means[0], min(means)


def run_case(name: str, provider: CsvProvider, hour: int, work_h: int, year: int,
             with_gate: bool, margin: float = HISTORY_MIN_SAVING, forecaster: str = "fitted",
             months: frozenset[int] = frozenset(range(1, 13))) -> CaseResult:
    fn = StepFunction(provider.values)
    grid = provider.values.index
    history = HistoryForecast(provider, FORECASTERS[forecaster]())
    naive = HistoryForecast(provider, ProfileForecaster(days=1, anomaly_hours=0))
    work = timedelta(hours=work_h)
    policies = {"perfect": (provider, SchedulePolicy()),
                "history": (history, SchedulePolicy(min_saving=margin)),
                "naive": (naive, SchedulePolicy())}
    savings: dict[str, list[float]] = {s: [] for s in SCHEDULES}
    met = total = 0
    for day in pd.date_range(f"{year}-01-01", f"{year}-12-31", freq="D", tz="UTC"):
        if day.month not in months:
            continue
        now = day + pd.Timedelta(hours=hour)
        deadline = now + DEADLINE
        run_now, best = oracle_saving(fn, grid, now, work)
        savings["oracle"].append(1 - best / run_now)
        for label, (source, policy) in policies.items():
            forecast = source.forecast(now.to_pydatetime(), deadline.to_pydatetime())
            plan = plan_start(forecast, now.to_pydatetime(), work, deadline.to_pydatetime(), policy)
            start = pd.Timestamp(plan.start)
            savings[label].append(1 - fn.mean(start, start + work) / run_now)
            met += start + work <= deadline
            total += 1
        if with_gate:
            start = gate_start(history, now, work, deadline, margin)
            savings["gate"].append(1 - fn.mean(start, start + work) / run_now)
            met += start + work <= deadline
            total += 1
    return CaseResult(name, hour, work_h, {k: float(np.mean(v)) for k, v in savings.items() if v},
                      met / total, len(savings["oracle"]))


def print_table(results: list[CaseResult], margin: float = HISTORY_MIN_SAVING,
                forecaster: str = "fitted") -> None:
    head = (f"{'trace':<6}{'submit':>7}{'work':>6} {'oracle':>8} {'perfect':>8} {'share':>6} "
            f"{'history':>8} {'share':>6} {'naive':>8} {'gate':>8} {'share':>6} {'deadl.':>7}")
    print(head)
    print("-" * len(head))
    for r in results:
        s, o = r.saving, r.saving["oracle"]
        print(f"{r.trace:<6}{r.hour:>5}:00{r.work_h:>5}h {o:>8.1%} {s['perfect']:>8.1%} "
              f"{r.share('perfect'):>6.0%} {s['history']:>8.1%} {r.share('history'):>6.0%} "
              f"{s['naive']:>8.1%} {_pct(s.get('gate', math.nan), 8, 1)} {_pct(r.share('gate'), 6, 0)} "
              f"{r.deadline_met:>7.0%}")
    print(f"\n{len(results)} cases x {results[0].days} days; savings are CO2 vs run-now "
          f"(mean of daily ratios); history: {forecaster} forecaster, margin {margin:.0%}.")
    n = len(results)
    goals = [
        ("perfect forecast >= 90% of oracle", sum(r.share("perfect") >= 0.9 for r in results)),
        ("history never worse than run-now", sum(r.saving["history"] >= 0 for r in results)),
        ("history >= half the oracle", sum(r.share("history") >= 0.5 for r in results)),
        ("every deadline met", sum(r.deadline_met == 1.0 for r in results)),
    ]
    print("goals: " + "; ".join(f"{label}: {met}/{n} cases" for label, met in goals))


def _pct(value: float, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:>{width}.{digits}%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="shared data folder (default $GREENTUNE_DATA or ../shared/data)")
    parser.add_argument("--csv", help="replay this CSV instead of the DE/FR traces")
    parser.add_argument("--hours", default="9,17", help="submission hours (UTC) for --csv")
    parser.add_argument("--work", default="1,4,8", help="study lengths in hours")
    parser.add_argument("--year", type=int, default=2020)
    parser.add_argument("--gate", action="store_true",
                        help="also replay CarbonGate on a simulated clock (slower)")
    parser.add_argument("--margin", type=float, default=HISTORY_MIN_SAVING,
                        help="min_saving the history policy must see before waiting "
                             f"(default HISTORY_MIN_SAVING = {HISTORY_MIN_SAVING:g})")
    parser.add_argument("--forecaster", choices=sorted(FORECASTERS), default="fitted",
                        help="history forecaster: fitted carry-over (default) or the fixed-fade "
                             "profile")
    parser.add_argument("--months", default="1-12",
                        help="months of --year to replay, e.g. 1-6 or 7-12 (a held-out half)")
    args = parser.parse_args(argv)
    lo, _, hi = args.months.partition("-")
    months = frozenset(range(int(lo), int(hi or lo) + 1))
    works = [int(h) for h in args.work.split(",")]
    if args.csv:
        traces = {Path(args.csv).stem: (Path(args.csv), tuple(int(h) for h in args.hours.split(",")))}
    else:
        root = data_dir(args.data_dir)
        traces = {name: (root / rel, hours) for name, (rel, hours) in DEFAULT_TRACES.items()}
    for name, (path, _) in traces.items():
        if not Path(path).is_file():
            print(f"trace {name}: no file {path} (set --data-dir or GREENTUNE_DATA)", file=sys.stderr)
            return 2
    results = []
    for name, (path, hours) in traces.items():
        provider = CsvProvider(path)
        for hour in hours:
            for work_h in works:
                results.append(run_case(name, provider, hour, work_h, args.year, args.gate,
                                        args.margin, args.forecaster, months))
                print(f"  done {name} {hour:02d}:00 {work_h} h", file=sys.stderr, flush=True)
    print_table(results, args.margin, args.forecaster)
    return 0


if __name__ == "__main__":
    sys.exit(main())
