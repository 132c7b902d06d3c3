"""From runs to figures: per-run measures, per-problem tables, and bo against the best peer.

Everything here reads the JSON lines the runner's CLI writes (one run a line), so a sweep
left running can be summarised at any time, and two sweeps merged, without rerunning.
Definitions (the issue's): hypervolume share of the true front's at 1 / 2 / 5 % of the
grid's kWh (the best reached with no more than that spent, driver CPU included); kWh to
95 % as % of the grid's (``never`` when the run ended first); failed share and distinct
configurations over the trials run. A tie is within :data:`TIE` of hypervolume share.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BUDGETS = (0.01, 0.02, 0.05)
TARGET = 0.95
TIE = 0.01


def measures(line: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run, from its curves (hv share, spent share of the grid's kWh, seconds)."""
    hv, spent, seconds = line["hv"], line["spent"], line["seconds"]
    out: dict[str, Any] = {}
    for b in BUDGETS:
        out[f"hv@{b:.0%}"] = max([h for h, s in zip(hv, spent, strict=True) if s <= b], default=0.0)
    reach = next((i for i, h in enumerate(hv) if h >= TARGET), None)
    out["kwh95"] = None if reach is None else 100 * spent[reach]
    out["wall95"] = None if reach is None else seconds[reach]
    out["final"] = hv[-1] if hv else 0.0
    out["failed"] = 100 * line["failed"] / max(line["trials"], 1)
    out["distinct"] = 100 * line["distinct"] / max(line["trials"], 1)
    out["trials"] = line["trials"]
    return out


def read(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every run in these files; a run found twice (a sweep restarted) counts once, the later one."""
    runs: dict[tuple, dict[str, Any]] = {}
    for path in paths:
        for text in Path(path).read_text().splitlines():
            if text.strip():
                line = json.loads(text)
                key = (line["problem"], line["strategy"], line["seed"], line["concurrency"],
                       line.get("max_trials"), line.get("max_fraction"))
                runs[key] = line
    return list(runs.values())


def _median(values: list[float | None]) -> float | None:
    """Median with ``None`` (never reached) as +infinity; ``None`` if the median run never got there."""
    if not values:
        return None
    m = statistics.median([math.inf if v is None else v for v in values])
    return None if math.isinf(m) else m


def _cell(values: list[float | None], digits: int) -> str:
    reached = [v for v in values if v is not None]
    med = _median(values)
    if med is None:
        return f"never ({len(reached)}/{len(values)})"
    top = "never" if len(reached) < len(values) else f"{max(reached):.{digits}f}"
    return f"{med:.{digits}f} [{min(reached):.{digits}f}-{top}]"


def grouped(lines: list[dict[str, Any]], concurrency: int = 1) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """problem -> strategy -> measures of each seed (runs that errored are left out)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for line in lines:
        if line["concurrency"] == concurrency and not line.get("error"):
            out[line["problem"]][line["strategy"]].append(measures(line))
    return out


def problem_table(lines: list[dict[str, Any]]) -> str:
    """Per problem and strategy: median [min-max] over seeds (markdown)."""
    cols = [f"hv@{b:.0%}" for b in BUDGETS] + ["kwh95", "failed", "distinct", "trials"]
    head = "| problem | strategy | hv @1 % | hv @2 % | hv @5 % | kWh % to 95 % | failed % | distinct % | trials |"
    rows = [head, "|" + "---|" * (len(cols) + 2)]
    for problem, strategies in grouped(lines).items():
        for strategy, seeds in strategies.items():
            cells = [_cell([s[c] for s in seeds], 3 if c.startswith("hv") else (2 if c == "kwh95" else 0))
                     for c in cols]
            rows.append(f"| {problem} | {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def versus_best_peer(lines: list[dict[str, Any]], ours: str = "bo") -> str:
    """Wins, ties and losses of ``ours`` against the best other strategy on each problem.

    The best peer is chosen per problem and per measure (the strategy with the best median
    there), so ``ours`` is held to the strongest rival each time, not to one fixed peer.
    """
    groups = grouped(lines)
    rows = ["| measure | wins / ties / losses | bo median (worst problem) | best peer median (worst problem) "
            "| bo - best peer: median, worst (problem) |", "|---|---|---|---|---|"]
    for measure in [f"hv@{b:.0%}" for b in BUDGETS] + ["kwh95"]:
        wins = ties = losses = 0
        gaps: list[tuple[float, str]] = []
        bo_values: list[tuple[float, str]] = []
        peer_values: list[tuple[float, str]] = []
        for problem, strategies in groups.items():
            if ours not in strategies or len(strategies) < 2:
                continue
            med = {s: _median([m[measure] for m in seeds]) for s, seeds in strategies.items()}
            if measure == "kwh95":  # lower is better; never = infinity
                med = {s: math.inf if v is None else v for s, v in med.items()}
                peer = min((v, s) for s, v in med.items() if s != ours)
                gap = med[ours] - peer[0]
                better, tie = gap < 0 and not math.isinf(med[ours]), abs(gap) <= 0.1 or med[ours] == peer[0]
            else:
                peer = max((v, s) for s, v in med.items() if s != ours)
                gap = med[ours] - peer[0]
                better, tie = gap > 0, abs(gap) <= TIE
            if tie:
                ties += 1
            elif better:
                wins += 1
            else:
                losses += 1
            gaps.append((gap, problem))
            bo_values.append((med[ours], problem))
            peer_values.append((peer[0], f"{problem}, {peer[1]}"))
        if not gaps:
            continue
        worst = max if measure == "kwh95" else min
        fmt = (lambda v: "never" if math.isinf(v) else f"{v:.2f} %") if measure == "kwh95" else (lambda v: f"{v:.3f}")
        finite = [g for g in gaps if not math.isinf(g[0])]
        worst_gap = worst(gaps, key=lambda g: g[0])
        rows.append(
            f"| {'kWh to 95 %' if measure == 'kwh95' else measure} | {wins} / {ties} / {losses} "
            f"| {fmt(statistics.median(v for v, _ in bo_values))} ({fmt(worst(bo_values)[0])}, {worst(bo_values)[1]}) "
            f"| {fmt(statistics.median(v for v, _ in peer_values))} ({fmt(worst(peer_values)[0])}, "
            f"{worst(peer_values)[1]}) "
            f"| {statistics.median(g for g, _ in finite) if finite else math.nan:+.3f}, "
            f"{worst_gap[0]:+.3f} ({worst_gap[1]}) |")
    return "\n".join(rows)


def concurrency_table(lines: list[dict[str, Any]]) -> str:
    """kWh and simulated wall clock to 95 % at k trials at once, against one at a time (median over seeds)."""
    levels = sorted({line["concurrency"] for line in lines})
    if 1 not in levels or levels == [1]:
        return ""  # nothing to compare against
    by = {k: grouped(lines, k) for k in levels}
    rows = ["| problem | strategy | " + " | ".join(f"k={k}: kWh % / wall h to 95 %" for k in levels)
            + " | " + " | ".join(f"k={k} vs 1: kWh x, wall x" for k in levels if k > 1) + " |",
            "|" + "---|" * (2 + len(levels) + len(levels) - 1)]
    for problem, strategies in by[1].items():
        for strategy, seeds in strategies.items():
            if not any(by[k].get(problem, {}).get(strategy) for k in levels if k > 1):
                continue
            cells, ratios = [], []
            base_k, base_w = _median([s["kwh95"] for s in seeds]), _median([s["wall95"] for s in seeds])
            for k in levels:
                runs = by[k].get(problem, {}).get(strategy, [])
                kk, ww = _median([s["kwh95"] for s in runs]), _median([s["wall95"] for s in runs])
                cells.append("never" if kk is None else f"{kk:.2f} / {ww / 3600:.1f}")
                if k > 1:
                    ratios.append("-" if None in (kk, base_k) or not base_k or not base_w
                                  else f"{kk / base_k:.2f}, {ww / base_w:.2f}")
            rows.append(f"| {problem} | {strategy} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(rows)


def limits_table(lines: list[dict[str, Any]]) -> str:
    """What each strategy could not do, and any run that errored (with its error)."""
    said: dict[str, str] = {}
    errors: dict[str, set[str]] = defaultdict(set)
    for line in lines:
        if line.get("limits"):
            said[line["strategy"]] = line["limits"]
        if line.get("error"):
            errors[line["strategy"]].add(f"{line['problem']}: {line['error']}")
    rows = [f"- {s}: {text}" for s, text in sorted(said.items())]
    rows += [f"- {s} failed to run on {len(e)} problem(s), e.g. {sorted(e)[0]}" for s, e in sorted(errors.items())]
    return "\n".join(rows)


def compact_table(lines: list[dict[str, Any]], ours: str = "bo") -> str:
    """One row a problem: ``ours`` against the best other strategy at each budget (medians over seeds).

    The failed share is set beside random's, the issue's yardstick for problems that fail.
    """
    rows = ["| problem | seeds (bo / peers) | bo at 1 / 2 / 5 % | bo 95 % at | best other at 1 / 2 / 5 % | "
            "best other 95 % at | failed %, bo / random |", "|---|---|---|---|---|---|---|"]
    for problem, strategies in grouped(lines).items():
        if ours not in strategies:
            continue
        others = {s: v for s, v in strategies.items() if s != ours}
        if not others:
            continue
        cells_bo, cells_peer = [], []
        for b in BUDGETS:
            key = f"hv@{b:.0%}"
            med = {s: _median([m[key] for m in seeds]) or 0.0 for s, seeds in others.items()}
            best = max(med, key=med.get)
            cells_bo.append(f"{_median([m[key] for m in strategies[ours]]):.3f}")
            cells_peer.append(f"{med[best]:.3f} ({best})")
        k95 = {s: _median([m["kwh95"] for m in seeds]) for s, seeds in others.items()}
        reached = {s: v for s, v in k95.items() if v is not None}
        best95 = f"{min(reached.values()):.2f} % ({min(reached, key=reached.get)})" if reached else "never"
        ours95 = _median([m["kwh95"] for m in strategies[ours]])
        failed = f"{_median([m['failed'] for m in strategies[ours]]):.0f}"
        if "random" in strategies:
            failed += f" / {_median([m['failed'] for m in strategies['random']]):.0f}"
        seeds = f"{len(strategies[ours])} / {max(len(v) for v in others.values())}"
        rows.append(f"| {problem} | {seeds} | {' / '.join(cells_bo)} | "
                    f"{'never' if ours95 is None else f'{ours95:.2f} %'} | {' / '.join(cells_peer)} | {best95} | "
                    f"{failed} |")
    return "\n".join(rows)
