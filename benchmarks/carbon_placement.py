"""Carbon-aware placement replayed over a year of two real grids (prints figures; not a test).

A stream of trials arrives over ``--year`` (Poisson arrivals at ``--load`` of the
cluster's slots, lengths drawn from ``--lengths``) on a cluster whose zones have
``--slots`` trial slots each. Every trial starts the moment it arrives, on a zone with a
free slot: the stream is thinned beforehand so that the whole cluster always has one
(the same trials for every policy, so no policy can win by dropping or delaying work).
Each trial draws a constant 1 kW. Zone choices compared:

- blind-rr: zone-blind round robin over the zones with a free slot;
- blind-random: a free slot chosen at random (zone-blind);
- lowest: greentune's own :class:`~tuner.carbon.placement.PlacementGate` on a simulated
  clock, ranking free zones by the recorded trace over the trial's *expected* run (the
  median length of the trials finished so far, as in a live study; the csv provider's
  forecast is its recorded values);
- hindsight (the oracle of the issue's goal): each trial's zone chosen in hindsight, as
  it arrives, among the zones free then: the one whose recorded intensity over the
  trial's actual run was lowest (knowing its length and the grid's future exactly);
- joint: a stronger bound, not a goal: all trials' zones chosen together knowing every
  future arrival, the exact optimum under the same slots (a linear programme over
  interval constraints whose matrix is totally unimodular, so the LP optimum is 0/1). It
  may keep a clean slot free for a long trial that has not arrived yet, which no online
  placement can know.

"share" is lowest's saving over blind-rr as a fraction of hindsight's (the issue's goal:
>= 90 %), "joint" the same against the joint optimum; "spilled" counts trials lowest sent
to a dirtier zone because the cleaner was full, and "delayed" trials that waited for a
slot (0: no throughput loss).

In 2020 France's grid was cleaner than Germany's at every half hour, so DE against FR
never tests the ranking. ``--other DE+6`` replaces FR by a **synthetic** zone: the German
trace shifted 6 hours later (its 03:00 value at 09:00: the same grid's daily cycle in a
timezone 6 hours west, with its weather shifted too, which no real neighbour has), so
the cleaner zone changes during the day. Its first 6 hours are the year's last 6 (the
trace wraps around).
Run::

    python benchmarks/carbon_placement.py                    # DE and FR 2020, default scenarios
    python benchmarks/carbon_placement.py --other DE+6       # DE against DE shifted 6 h (synthetic)
    python benchmarks/carbon_placement.py --slots DE=4,FR=2 --lengths 1,4,8 --load 0.7

The data folder is ``--data-dir``, else ``$GREENTUNE_DATA``, else ``../shared/data``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries  # noqa: E402
from tuner.carbon.csvfile import read_intensity_csv  # noqa: E402
from tuner.carbon.placement import ZONE_KEY, PlacementGate  # noqa: E402
from tuner.carbon.series import StepFunction  # noqa: E402

TRACES = {"DE": "carbon/ger_ci.csv", "FR": "carbon/fr_ci.csv"}
SCENARIOS = [  # (slots per zone, trial lengths in hours, load)
    ({"DE": 4, "FR": 2}, (1, 4, 8), 0.6),
    ({"DE": 4, "FR": 2}, (1, 4, 8), 0.9),
    ({"DE": 2, "FR": 2}, (1,), 0.7),
    ({"DE": 2, "FR": 1}, (8, 24), 0.8),
]


def data_dir(flag: str | None) -> Path:
    return Path(flag or os.environ.get("GREENTUNE_DATA") or REPO.parent / "shared" / "data")


class TraceProvider(IntensityProvider):
    """A recorded trace as provider: its forecast is the recorded values (as the csv
    provider's is), its "now" the simulation's clock."""

    signal = "average"

    def __init__(self, name: str, values: pd.Series, clock: list[datetime]) -> None:
        self.name, self.values, self.clock = name, values, clock
        self._ns = values.index.as_unit("ns").asi8
        self._v = values.to_numpy(dtype=float)

    def current(self) -> IntensityReading:
        now = pd.Timestamp(self.clock[0])
        value = float(self.values.iloc[max(self.values.index.searchsorted(now, "right") - 1, 0)])
        return IntensityReading(self.clock[0], value, self.name, self.signal)

    def history(self, start: datetime, end: datetime) -> IntensitySeries:
        # the value in force at start, then every step up to end (what window() gives, cheaper)
        lo = max(self._ns.searchsorted(pd.Timestamp(start).value, "right") - 1, 0)
        hi = self._ns.searchsorted(pd.Timestamp(end).value, "left")
        index = pd.DatetimeIndex(self._ns[lo:max(hi, lo + 1)], tz="UTC")
        return IntensitySeries(pd.Series(self._v[lo:max(hi, lo + 1)], index=index), self.name, self.signal)

    forecast = history


@dataclass
class Stream:
    """Trials as (start, end) in hours since the year's start, sorted by start."""

    start: np.ndarray
    end: np.ndarray


def make_stream(slots: int, lengths: tuple[float, ...], load: float, hours: float, rng: np.random.Generator) -> Stream:
    """Poisson arrivals at ``load`` x ``slots`` busy slots on average, thinned so that a slot
    is always free at arrival (policy-independent: the busy count does not depend on zones)."""
    rate = load * slots / float(np.mean(lengths))
    t, starts, ends, running = 0.0, [], [], []
    while True:
        t += rng.exponential(1.0 / rate)
        length = float(rng.choice(lengths))
        if t + length >= hours:
            break
        running = [e for e in running if e > t]
        if len(running) >= slots:
            continue
        running.append(t + length)
        starts.append(t)
        ends.append(t + length)
    return Stream(np.array(starts), np.array(ends))


def co2_matrix(stream: Stream, zones: dict[str, StepFunction], origin: pd.Timestamp) -> np.ndarray:
    """CO2 (kg at 1 kW) of every trial in every zone: [trial, zone]."""
    out = np.empty((len(stream.start), len(zones)))
    ns_per_h = 3600e9
    for j, fn in enumerate(zones.values()):
        a = fn._integral(origin.value + stream.start * ns_per_h)  # g/kWh x ns, exact for step-held values
        b = fn._integral(origin.value + stream.end * ns_per_h)
        out[:, j] = (b - a) / ns_per_h / 1000.0
    return out


def simulate_greedy(stream: Stream, slots: list[int], pick) -> np.ndarray:
    """Zone index per trial when ``pick(i, free_zones)`` chooses at each arrival."""
    busy_until: list[list[float]] = [[] for _ in slots]
    choice = np.empty(len(stream.start), dtype=int)
    for i, (s, e) in enumerate(zip(stream.start, stream.end, strict=True)):
        for lane in busy_until:
            lane[:] = [x for x in lane if x > s]
        free = [j for j, n in enumerate(slots) if len(busy_until[j]) < n]
        j = pick(i, free)
        busy_until[j].append(e)
        choice[i] = j
    return choice


def simulate_gate(stream: Stream, names: list[str], slots: list[int], traces: dict[str, pd.Series],
                  origin: datetime) -> tuple[np.ndarray, int, int]:
    """Zone per trial as greentune's PlacementGate chooses it, trials it had to delay, and
    trials it spilled (the zone cleanest over the expected run was full)."""
    clock = [origin]
    providers = {n: TraceProvider(n, traces[n], clock) for n in names}
    finished: list[float] = []

    def expected() -> timedelta:
        return timedelta(hours=float(np.median(finished)) if finished else 1.0)

    class One:  # the inner searcher: always a trial
        def suggest(self, trial_id: str) -> dict:
            return {"x": 0}

        def on_trial_complete(self, *args, **kwargs) -> None:
            pass

    gate = PlacementGate(One(), providers, slots=lambda: dict(zip(names, slots, strict=True)), expected_run=expected,
                         clock=lambda: clock[0], refresh_s=float("inf"))
    ending: list[tuple[float, str]] = []
    choice = np.empty(len(stream.start), dtype=int)
    delayed = 0
    for i, (s, e) in enumerate(zip(stream.start, stream.end, strict=True)):
        for _end, tid in sorted(x for x in ending if x[0] <= s):
            gate.on_trial_complete(tid, {"done": True})
            finished.append(float(stream.end[int(tid)] - stream.start[int(tid)]))
        ending = [x for x in ending if x[0] > s]
        clock[0] = origin + timedelta(hours=float(s))
        params = gate.suggest(str(i))
        if not isinstance(params, dict):
            delayed += 1  # never happens: the stream always leaves a slot free
            continue
        choice[i] = names.index(params[ZONE_KEY])
        ending.append((float(e), str(i)))
    return choice, delayed, gate.spilled


def oracle(stream: Stream, co2: np.ndarray, slots: list[int]) -> np.ndarray:
    """The hindsight optimum for two zones: x_i = 1 puts trial i in zone 1. At every arrival
    instant, trials running in zone 1 <= its slots and in zone 0 <= its slots."""
    assert co2.shape[1] == 2, "the exact oracle is written for two zones"
    n = len(stream.start)
    cost = co2[:, 1] - co2[:, 0]
    longest = float((stream.end - stream.start).max())
    r, c, v = [], [], []
    bounds = np.empty(2 * n)
    for k, t in enumerate(stream.start):  # sorted: trials live at t start at or before it
        first = np.searchsorted(stream.start, t - longest, "left")
        live = first + np.flatnonzero(stream.end[first:k + 1] > t)
        r += [2 * k] * len(live) + [2 * k + 1] * len(live)
        c += list(live) * 2
        v += [1.0] * len(live) + [-1.0] * len(live)
        bounds[2 * k] = slots[1]  # zone 1: sum x <= its slots
        bounds[2 * k + 1] = slots[0] - len(live)  # zone 0: len(live) - sum x <= its slots
    rows = coo_matrix((v, (r, c)), shape=(2 * n, n)).tocsr()
    res = linprog(cost, A_ub=rows, b_ub=bounds, bounds=(0, 1), method="highs")
    if res.status != 0:
        raise RuntimeError(f"oracle LP: {res.message}")
    x = np.round(res.x).astype(int)
    assert np.allclose(res.x, x, atol=1e-6), "LP optimum not integral"
    return x


def run(traces: dict[str, pd.Series], year: int, slots_by_zone: dict[str, int], lengths: tuple[float, ...],
        load: float, seed: int, horizon_h: float | None = None) -> dict[str, float]:
    """One scenario's totals (kg) and shares; ``horizon_h`` cuts the year short (tests)."""
    names = list(slots_by_zone)
    slots = [slots_by_zone[n] for n in names]
    origin = datetime(year, 1, 1, tzinfo=timezone.utc)
    hours = horizon_h or (datetime(year + 1, 1, 1, tzinfo=timezone.utc) - origin).total_seconds() / 3600
    rng = np.random.default_rng(seed)
    stream = make_stream(sum(slots), lengths, load, hours, rng)
    fns = {n: StepFunction(traces[n]) for n in names}
    co2 = co2_matrix(stream, fns, pd.Timestamp(origin))
    n = len(stream.start)

    def total(choice: np.ndarray) -> float:
        return float(co2[np.arange(n), choice].sum())

    rr = itertools.count()
    blind_rr = simulate_greedy(stream, slots, lambda i, free: free[next(rr) % len(free)])
    pick_rng = np.random.default_rng(seed + 1)

    def random_slot(i: int, free: list[int]) -> int:
        return int(pick_rng.choice(free))

    blind_random = simulate_greedy(stream, slots, random_slot)
    started = time.process_time()
    lowest, delayed, spilled = simulate_gate(stream, names, slots, traces, origin)
    gate_cpu = time.process_time() - started
    hindsight = simulate_greedy(stream, slots, lambda i, free: free[int(np.argmin(co2[i, free]))])
    best = oracle(stream, co2, slots)
    base = total(blind_rr)
    return {
        "trials": n, "blind_rr": base, "blind_random": total(blind_random), "lowest": total(lowest),
        "hindsight": total(hindsight), "joint": total(best),
        "share": (base - total(lowest)) / (base - total(hindsight)),
        "share_vs_random": (total(blind_random) - total(lowest)) / (total(blind_random) - total(hindsight)),
        "share_joint": (base - total(lowest)) / (base - total(best)),
        "spilled": spilled, "delayed": delayed, "gate_ms": 1000 * gate_cpu / max(n, 1),
    }


def shifted(values: pd.Series, hours: float, year: int) -> pd.Series:
    """A synthetic zone: ``values`` over ``year`` on the same timestamps, each value the one
    recorded ``hours`` earlier (wrapping around the year's end), so its daily cycle runs
    that much later."""
    step = values.index.to_series().diff().median()
    n = int(round(pd.Timedelta(hours=hours) / step))
    if n <= 0 or n >= len(values):
        raise ValueError(f"--other: a shift of {hours:g} h is not within the trace's "
                         f"{len(values)} steps of {step}")
    return pd.Series(np.roll(values.to_numpy(), n), index=values.index)


def other_zone(spec: str) -> tuple[str, float]:
    """``DE+6`` -> ("DE", 6.0): the zone to shift and by how many hours."""
    base, sep, hours = spec.partition("+")
    try:
        value = float(hours)
    except ValueError:
        value = float("nan")
    if base not in TRACES or not sep or not value > 0:
        raise SystemExit(f"--other: expected ZONE+HOURS with ZONE in {', '.join(TRACES)} and "
                         f"HOURS > 0 (e.g. DE+6), got {spec!r}")
    return base, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="shared data folder (default $GREENTUNE_DATA or ../shared/data)")
    parser.add_argument("--year", type=int, default=2020)
    parser.add_argument("--slots", help="one scenario's slots per zone, e.g. DE=4,FR=2 (default: four scenarios)")
    parser.add_argument("--lengths", default="1,4,8", help="trial lengths in hours, drawn uniformly")
    parser.add_argument("--load", type=float, default=0.7, help="mean share of the cluster's slots busy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--other", help="replace FR by a synthetic zone: ZONE+HOURS, the ZONE trace "
                                        "shifted HOURS later (e.g. DE+6)")
    args = parser.parse_args()
    other = other_zone(args.other) if args.other else None
    root = data_dir(args.data_dir)
    traces = {}
    for zone, rel in TRACES.items():
        path = root / rel
        if not path.is_file():
            print(f"trace {zone}: no file {path} (set --data-dir or GREENTUNE_DATA)", file=sys.stderr)
            return 2
        values = read_intensity_csv(path)
        traces[zone] = values[(values.index >= f"{args.year}-01-01") & (values.index < f"{args.year + 1}-01-02")]
    pair = "DE and FR traces"
    if other:
        name = args.other
        traces.pop("FR")
        traces[name] = shifted(traces[other[0]], other[1], args.year)
        pair = f"DE and {name} (synthetic: the {other[0]} trace {other[1]:g} h later)"
    if args.slots:
        slots = {k: int(v) for k, v in (item.split("=") for item in args.slots.split(","))}
        scenarios = [(slots, tuple(float(x) for x in args.lengths.split(",")), args.load)]
    else:
        scenarios = SCENARIOS
    if other:  # the default scenarios' second zone is the synthetic one
        scenarios = [({(args.other if k == "FR" else k): v for k, v in slots.items()}, lengths, load)
                     for slots, lengths, load in scenarios]
    print(f"placement over {args.year}, {pair}; kg CO2 at 1 kW per trial; share = lowest's saving "
          "over blind-rr / hindsight's; joint: the same against the joint optimum")
    print(f"{'slots':>10} {'lengths h':>10} {'load':>5} {'trials':>6} {'blind-rr':>9} {'blind-rnd':>9} "
          f"{'lowest':>9} {'hindsight':>9} {'joint':>9} {'saving':>7} {'share':>6} {'vs rnd':>6} {'joint':>6} "
          f"{'spilled':>7} {'delayed':>7} "
          f"{'ms/trial':>8}")
    for slots, lengths, load in scenarios:
        r = run(traces, args.year, slots, lengths, load, args.seed)
        label = ",".join(f"{k}={v}" for k, v in slots.items())
        saving = 1 - r["lowest"] / r["blind_rr"]
        print(f"{label:>10} {','.join(f'{x:g}' for x in lengths):>10} {load:>5.2f} {r['trials']:>6} "
              f"{r['blind_rr']:>9.0f} {r['blind_random']:>9.0f} {r['lowest']:>9.0f} {r['hindsight']:>9.0f} "
              f"{r['joint']:>9.0f} {saving:>6.1%} {r['share']:>6.1%} {r['share_vs_random']:>6.1%} "
              f"{r['share_joint']:>6.1%} {r['spilled']:>7} "
              f"{r['delayed']:>7} {r['gate_ms']:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
