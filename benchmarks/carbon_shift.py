"""Carbon-aware start shifting replayed over a year of real intensity (prints figures; not a test).

Every day of ``--year`` (or every ``--every``-th day) a study of N hours is submitted at a
fixed hour with a 24 h deadline. Schedules compared against starting at once (run-now):

- oracle: the best contiguous window, by brute force over the trace's own grid (written
  independently of ``plan_start``, so it also checks the planner);
- perfect: ``plan_start`` on the recorded values as forecast;
- history: what a study with ``forecast: history`` does live: :class:`CarbonGate` over
  :class:`HistoryForecast` (fitted on the history before each plan only) with the
  risk-aware rule (wait only for a saving that clears the forecast's past error at that
  lead, ``--confidence``), polled every 15 minutes on a simulated clock and re-planning
  every hour (``HISTORY_REPLAN``, as the live gate does), launching as soon as waiting no
  longer pays: the re-plan finds no later window worth it, or the
  :class:`~tuner.carbon.guard.WaitGuard` (``--guard``; ``HISTORY_GUARD``, none by
  default) sees the window now as clean as the one waited for, or the intensity since
  the wait began running above its forecast;
- unguarded: the same gate without a WaitGuard (the default; equals history unless
  ``--guard`` sets one);
- once: the same risk-aware plan made once at submission, never re-checked;
- neutral: the plan without the risk rule (the previous default), made once;
- naive: "yesterday's curve is today's forecast", no margin (the issue's strawman).

For each schedule the mean over days of ``1 - CO2(policy) / CO2(run-now)``; for history
also the day-by-day distribution: the share of days worse than run-now, the worst day and
the 5th percentile; "ceiling" is the in-sample ceiling of
``benchmarks/carbon_forecast_ceiling.py`` for the same case (whole-hour starts, fitted on
the very year it is scored on). ``--choose`` replays each trace at several confidences and
picks, per held-out trace, the confidence chosen on the *other* trace(s) (leave one trace
out); ``--choose-guard`` does the same for the WaitGuard (``none``: no guard, ``target``:
the target check alone, a number: the target check and that divergence). Run::

    python benchmarks/carbon_shift.py --every 3               # DE and FR 2020, every 3rd day
    python benchmarks/carbon_shift.py --every 3 --choose 0.6,0.75,0.9
    python benchmarks/carbon_shift.py --every 4 --choose-guard none,target,0.05,0.1,0.2
    python benchmarks/carbon_shift.py --csv my.csv --hours 0,9,17

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
    HISTORY_CONFIDENCE,
    HISTORY_GUARD,
    HISTORY_MIN_SAVING,
    HISTORY_REPLAN,
    FittedForecaster,
    HistoryForecast,
    ProfileForecaster,
)
from tuner.carbon.gate import CarbonGate
from tuner.carbon.guard import WaitGuard
from tuner.carbon.schedule import SchedulePolicy, plan_start
from tuner.carbon.series import StepFunction, resample

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # carbon_forecast_ceiling
DEFAULT_TRACES = {"DE": ("carbon/ger_ci.csv", (9, 17)), "FR": ("carbon/fr_ci.csv", (9, 0))}
DEADLINE = timedelta(hours=24)
SCHEDULES = ("oracle", "perfect", "history", "unguarded", "once", "neutral", "naive")
FORECASTERS = {"fitted": FittedForecaster, "profile": ProfileForecaster}  # history's
POLL = timedelta(minutes=15)
REPLAN = HISTORY_REPLAN  # what the live gate does with a history forecast


class Launch(Searcher):
    """Stands for the study's searcher: always ready to launch."""

    def suggest(self, trial_id: str) -> dict:
        return {}


class SimClock:
    def __init__(self, now) -> None:
        self.now = now

    def __call__(self):
        return self.now


def gate_start(provider, now, work: timedelta, deadline, policy: SchedulePolicy,
               guard: WaitGuard | None = None, replan: timedelta = REPLAN) -> pd.Timestamp:
    """When CarbonGate, polled every 15 minutes, lets the study's first trial launch."""
    clock = SimClock(now.to_pydatetime())
    gate = CarbonGate(Launch(), provider, deadline=deadline.to_pydatetime(), clock=clock,
                      policy=policy, work=lambda: work, replan_every=replan, guard=guard)
    while gate.suggest("trial") is None:
        clock.now += POLL
    return pd.Timestamp(clock.now)


@dataclass
class CaseResult:
    trace: str
    hour: int
    work_h: int
    daily: dict[str, np.ndarray]  # saving vs run-now per day, per schedule
    deadline_met: float  # share of (day, schedule) pairs that ended by the deadline
    ceiling: float = math.nan  # in-sample ceiling (carbon_forecast_ceiling.py)
    confidence: float = HISTORY_CONFIDENCE
    guard: str = "none"  # history's WaitGuard: none, target, or the divergence

    @property
    def setting(self) -> tuple[float, str]:
        """(confidence, guard) history ran with."""
        return (self.confidence, self.guard)

    @property
    def days(self) -> int:
        return len(self.daily["oracle"])

    @property
    def saving(self) -> dict[str, float]:
        return {k: float(np.mean(v)) for k, v in self.daily.items()}

    def share(self, schedule: str) -> float:
        """The schedule's mean saving as a share of the oracle's."""
        oracle = self.saving["oracle"]
        return self.saving.get(schedule, math.nan) / oracle if oracle > 0 else math.nan

    def worse(self, schedule: str = "history") -> float:
        """Share of days the schedule emitted more than run-now (by more than 0.01 %)."""
        return float(np.mean(self.daily[schedule] < -1e-4))

    def worst(self, schedule: str = "history") -> float:
        return float(np.min(self.daily[schedule]))

    def p5(self, schedule: str = "history") -> float:
        return float(np.percentile(self.daily[schedule], 5))

    def meets(self) -> dict[str, bool]:
        """The issue's goals for this case."""
        s = self.saving
        return {
            "perfect >= 90% of oracle": self.share("perfect") >= 0.9,
            "history mean >= run-now": s["history"] >= 0,
            "history worse on <= 10% of days": self.worse() <= 0.10,
            "history worst day >= -25%": self.worst() >= -0.25,
            "history >= 90% of ceiling": (not math.isnan(self.ceiling)
                                          and s["history"] >= 0.9 * self.ceiling),
            "every deadline met": self.deadline_met == 1.0,
        }


def data_dir(flag: str | None) -> Path:
    return Path(flag or os.environ.get("GREENTUNE_DATA") or REPO.parent / "shared" / "data")


def oracle_saving(fn: StepFunction, grid: pd.DatetimeIndex, now: pd.Timestamp, work: timedelta) -> tuple[float, float]:
    """(run-now mean, best window mean) by brute force over every grid start in the deadline."""
    starts = grid[(grid >= now) & (grid <= now + DEADLINE - work)]
    means = [fn.mean(s, s + work) for s in starts]
    return means[0], min(means)


def run_case(name: str, provider: CsvProvider, hour: int, work_h: int, year: int,
             confidence: float = HISTORY_CONFIDENCE, margin: float = HISTORY_MIN_SAVING,
             forecaster: str = "fitted", months: frozenset[int] = frozenset(range(1, 13)),
             every: int = 1, history: HistoryForecast | None = None,
             guard: WaitGuard | None = HISTORY_GUARD, replan: timedelta = REPLAN) -> CaseResult:
    """One (trace, hour, work) case. Pass the same ``history`` for every case of a trace:
    its past forecasts (the backtests behind the risk) are then computed once."""
    return run_guards(name, provider, hour, work_h, year, confidence, margin, forecaster,
                      months, every, history, [guard], replan)[0]


def run_guards(name: str, provider: CsvProvider, hour: int, work_h: int, year: int,
               confidence: float, margin: float, forecaster: str, months: frozenset[int],
               every: int, history: HistoryForecast | None, guards: list[WaitGuard | None],
               replan: timedelta = REPLAN) -> list[CaseResult]:
    """:func:`run_case` for several guards at once: every schedule but history's gate is
    replayed once and shared (one result per guard)."""
    fn = StepFunction(provider.values)
    grid = provider.values.index
    history = history or HistoryForecast(provider, FORECASTERS[forecaster]())
    naive = HistoryForecast(provider, ProfileForecaster(days=1, anomaly_hours=0))
    work = timedelta(hours=work_h)
    risky = SchedulePolicy(confidence=confidence)
    policies = {"perfect": (provider, SchedulePolicy()),
                "neutral": (history, SchedulePolicy(min_saving=margin)),
                "naive": (naive, SchedulePolicy())}
    savings: dict[str, list[float]] = {s: [] for s in SCHEDULES}
    guarded: list[list[float]] = [[] for _ in guards]
    met = total = 0
    days = pd.date_range(f"{year}-01-01", f"{year}-12-31", freq="D", tz="UTC")
    for day in days[::every]:
        if day.month not in months:
            continue
        now = day + pd.Timedelta(hours=hour)
        deadline = now + DEADLINE
        run_now, best = oracle_saving(fn, grid, now, work)
        savings["oracle"].append(1 - best / run_now)
        starts = {}
        for label, (source, policy) in policies.items():
            forecast = source.forecast(now.to_pydatetime(), deadline.to_pydatetime())
            plan = plan_start(forecast, now.to_pydatetime(), work, deadline.to_pydatetime(), policy)
            starts[label] = pd.Timestamp(plan.start)
        forecast = history.forecast(now.to_pydatetime(), deadline.to_pydatetime())
        risk = history.saving_risk(now.to_pydatetime(), deadline.to_pydatetime(), work, confidence)
        plan = plan_start(forecast, now.to_pydatetime(), work, deadline.to_pydatetime(), risky, risk)
        starts["once"] = pd.Timestamp(plan.start)
        starts["unguarded"] = gate_start(history, now, work, deadline, risky, None, replan)
        for label, start in starts.items():
            savings[label].append(1 - fn.mean(start, start + work) / run_now)
            met += start + work <= deadline
            total += 1
        for i, guard in enumerate(guards):
            start = gate_start(history, now, work, deadline, risky, guard, replan)
            guarded[i].append(1 - fn.mean(start, start + work) / run_now)
            met += start + work <= deadline
            total += 1
    out = []
    for guard, daily in zip(guards, guarded, strict=True):
        arrays = {k: np.array(v) for k, v in savings.items() if k != "history"}
        arrays["history"] = np.array(daily)
        out.append(CaseResult(name, hour, work_h, arrays, met / total, confidence=confidence,
                              guard=guard_label(guard)))
    return out


def print_table(results: list[CaseResult], note: str = "") -> None:
    head = (f"{'trace':<6}{'submit':>7}{'work':>5} {'conf':>5} {'div':>5} {'oracle':>7} {'perfect':>8} "
            f"{'share':>6} {'ceiling':>8} | {'history':>8} {'share':>6} {'/ceil':>6} "
            f"{'worse':>6} {'worst':>7} {'p5':>7} | {'unguard':>7} {'worse':>6} {'worst':>7} | "
            f"{'once':>7} {'neutral':>8} {'naive':>7} "
            f"{'deadl.':>7}")
    print(head)
    print("-" * len(head))
    for r in results:
        s = r.saving
        ceil = s["history"] / r.ceiling if r.ceiling > 0 else math.nan
        div = r.guard[:6]
        print(f"{r.trace:<6}{r.hour:>4}:00{r.work_h:>4}h {r.confidence:>5.2f} {div:>5} {s['oracle']:>7.1%} "
              f"{s['perfect']:>8.1%} {r.share('perfect'):>6.0%} {_pct(r.ceiling, 8, 1)} | "
              f"{s['history']:>8.1%} {r.share('history'):>6.0%} {_pct(ceil, 6, 0)} "
              f"{r.worse():>6.1%} {r.worst():>7.1%} {r.p5():>7.1%} | {s['unguarded']:>7.1%} "
              f"{r.worse('unguarded'):>6.1%} {r.worst('unguarded'):>7.1%} | {s['once']:>7.1%} "
              f"{s['neutral']:>8.1%} {s['naive']:>7.1%} {r.deadline_met:>7.0%}")
    n = len(results)
    print(f"\n{n} cases x {results[0].days} days{note}; savings are CO2 vs run-now (mean of "
          "daily ratios); worse: share of days history emitted more than run-now; worst, p5: "
          "its worst day and 5th percentile; unguarded: the same gate without the "
          "WaitGuard re-checks (the previous default).")
    goals: dict[str, int] = {}
    for r in results:
        for goal, ok in r.meets().items():
            goals[goal] = goals.get(goal, 0) + ok
    print("goals: " + "; ".join(f"{goal}: {met}/{n}" for goal, met in goals.items()))
    shares = np.array([r.share("history") for r in results])
    ceils = np.array([r.saving["history"] / r.ceiling if r.ceiling > 0 else np.nan
                      for r in results])
    worse = np.array([r.worse() for r in results])
    print(f"history, median [worst] case: share of oracle {np.median(shares):.0%} "
          f"[{shares.min():.0%}], of the ceiling {np.nanmedian(ceils):.0%} "
          f"[{np.nanmin(ceils):.0%}], days worse than run-now {np.median(worse):.1%} "
          f"[{worse.max():.1%}], worst day [{min(r.worst() for r in results):.1%}]")


def _pct(value: float, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:>{width}.{digits}%}"


def ceiling_for(values: pd.Series, hour: int, work_h: int, year: int) -> float:
    """The in-sample ceiling's saving for one case (see carbon_forecast_ceiling.py)."""
    from carbon_forecast_ceiling import shares

    series = resample(values, "1h").asfreq("1h").interpolate()
    try:
        return shares(series.to_numpy(), series.index, hour, work_h, year)[1]
    except (KeyError, IndexError, ValueError):  # the trace does not span the year
        return math.nan


def choose(results: list[CaseResult]) -> tuple[float, float]:
    """The setting (confidence, guard) that meets the day-by-day goals in every case
    of ``results`` with the highest mean saving; if none does, the one whose worst case
    has the fewest days worse, then the mildest worst day."""
    by_conf: dict[tuple[float, float], list[CaseResult]] = {}
    for r in results:
        by_conf.setdefault(r.setting, []).append(r)

    def safe(rs: list[CaseResult]) -> bool:
        return all(r.worse() <= 0.10 and r.worst() >= -0.25 and r.saving["history"] >= 0
                   for r in rs)

    ok = [c for c, rs in by_conf.items() if safe(rs)]
    if ok:
        return max(ok, key=lambda c: np.mean([r.saving["history"] for r in by_conf[c]]))
    return min(by_conf, key=lambda c: (max(r.worse() for r in by_conf[c]),
                                       -min(r.worst() for r in by_conf[c])))


def guard_label(guard: WaitGuard | None) -> str:
    if guard is None:
        return "none"
    return "target" if guard.divergence is None else f"{guard.divergence:g}"


def parse_guard(text: str) -> WaitGuard | None:
    """``none`` | ``target`` | a divergence (fraction >= 0); bad input exits with one line."""
    text = text.strip()
    if text == "none":
        return None
    if text == "target":
        return WaitGuard()
    try:
        return WaitGuard(divergence=float(text))
    except ValueError as exc:
        raise SystemExit(f"--guard: expected none, target or a fraction >= 0, got {text!r}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="shared data folder (default $GREENTUNE_DATA or ../shared/data)")
    parser.add_argument("--csv", action="append",
                        help="also replay this CSV, as PATH or NAME=PATH (a held-out trace; "
                             "repeatable); with --only-csv instead of the DE/FR traces")
    parser.add_argument("--only-csv", action="store_true", help="replay only the --csv traces")
    parser.add_argument("--hours", default="0,9,17", help="submission hours (UTC) for --csv")
    parser.add_argument("--work", default="1,4,8", help="study lengths in hours")
    parser.add_argument("--year", type=int, default=2020)
    parser.add_argument("--every", type=int, default=1,
                        help="replay every N-th day only (CPU: the machine is shared)")
    parser.add_argument("--confidence", type=float, default=HISTORY_CONFIDENCE,
                        help="risk-aware waiting: the confidence a saving must clear "
                             f"(default HISTORY_CONFIDENCE = {HISTORY_CONFIDENCE:g})")
    parser.add_argument("--choose", help="comma-separated confidences: replay each, and report "
                                         "each trace at the one chosen on the other traces")
    parser.add_argument("--guard", default=guard_label(HISTORY_GUARD),
                        help="history's WaitGuard: none, target (take a window now as clean as "
                             "the one waited for), or a fraction (also end a wait once the "
                             "intensity since it began runs that far above its forecast); "
                             f"default HISTORY_GUARD: {guard_label(HISTORY_GUARD)}")
    parser.add_argument("--choose-guard",
                        help="comma-separated --guard values to replay, as --choose does; each "
                             "trace is reported at the setting chosen on the others")
    parser.add_argument("--replan", type=float, default=REPLAN.total_seconds() / 60,
                        help="minutes between the gate's re-plans in the replay (default 60: "
                             "HISTORY_REPLAN, the live gate's with a history forecast)")
    parser.add_argument("--margin", type=float, default=HISTORY_MIN_SAVING,
                        help="min_saving of the 'neutral' plan (default HISTORY_MIN_SAVING = "
                             f"{HISTORY_MIN_SAVING:g})")
    parser.add_argument("--forecaster", choices=sorted(FORECASTERS), default="fitted",
                        help="history forecaster: fitted carry-over (default) or the fixed-fade "
                             "profile")
    parser.add_argument("--months", default="1-12",
                        help="months of --year to replay, e.g. 1-6 or 7-12 (a held-out half)")
    args = parser.parse_args(argv)
    lo, _, hi = args.months.partition("-")
    months = frozenset(range(int(lo), int(hi or lo) + 1))
    works = [int(h) for h in args.work.split(",")]
    traces: dict[str, tuple[Path, tuple[int, ...]]] = {}
    if not args.only_csv:
        root = data_dir(args.data_dir)
        traces = {name: (root / rel, hours) for name, (rel, hours) in DEFAULT_TRACES.items()}
    for csv in args.csv or []:  # NAME=PATH or PATH
        name, _, path = csv.rpartition("=")
        traces[name or Path(path).stem] = (Path(path), tuple(int(h) for h in args.hours.split(",")))
    for name, (path, _) in traces.items():
        if not Path(path).is_file():
            print(f"trace {name}: no file {path} (set --data-dir or GREENTUNE_DATA)", file=sys.stderr)
            return 2
    confidences = ([float(c) for c in args.choose.split(",")] if args.choose
                   else [args.confidence])
    guard_grid = [parse_guard(g) for g in (args.choose_guard or args.guard).split(",")]
    choosing = bool(args.choose or args.choose_guard)
    replan = timedelta(minutes=args.replan)
    results = []
    for name, (path, hours) in traces.items():
        provider = CsvProvider(path)
        history = HistoryForecast(provider, FORECASTERS[args.forecaster]())
        for hour in hours:
            for work_h in works:
                ceiling = ceiling_for(provider.values, hour, work_h, args.year)
                for conf in confidences:
                    for r in run_guards(name, provider, hour, work_h, args.year, conf,
                                        args.margin, args.forecaster, months, args.every,
                                        history, guard_grid, replan):
                        r.ceiling = ceiling
                        results.append(r)
                    print(f"  done {name} {hour:02d}:00 {work_h} h at {conf:g}", file=sys.stderr,
                          flush=True)
    note = f" (every {args.every} days)" if args.every > 1 else ""
    if not choosing:
        print_table(results, note)
        return 0
    for setting in sorted({r.setting for r in results}):
        print(f"\n== every trace at confidence {setting[0]:g}, guard {setting[1]}")
        print_table([r for r in results if r.setting == setting], note)
    if len(traces) < 2:
        print("\n(one trace: no other to choose its confidence on; see each confidence above)")
        return 0
    held_out = []
    for name in traces:
        chosen = choose([r for r in results if r.trace != name])
        print(f"\n{name}: confidence {chosen[0]:g}, guard {chosen[1]}, chosen on "
              f"{', '.join(t for t in traces if t != name)}")
        held_out += [r for r in results if r.trace == name and r.setting == chosen]
    print("\n== leave one trace out: each trace at the confidence chosen on the others")
    print_table(held_out, note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
