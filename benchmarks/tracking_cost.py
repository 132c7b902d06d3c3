"""What live MLflow costs the driver per trial, beside writing the same trial once at its end.

    python benchmarks/tracking_cost.py                 # 30 trials of 10 reports, SQLite store
    python benchmarks/tracking_cost.py --trials 50 --reports 30

Each trial is written twice to a fresh SQLite store in the same run:
- *live*: a child run opened when the trial starts, one ``log_points`` call per
  heartbeat (one report and one energy point each), then the final record;
- *at the end*: the same points in one ``log_trial`` call when the trial ends.

It prints the driver's CPU milliseconds per trial for each, their ratio, and the live
cost per heartbeat. Compare ratios across machines, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from tuner.config import load_config
from tuner.study.record import TrialRecord, TrialStatus
from tuner.tracking.mlflow import StudyTracker


def _trial(index: int, reports: int, start: float) -> tuple[TrialRecord, list]:
    timeline = tuple((start + 2.0 * (i + 1), 1e-6 * (i + 1)) for i in range(reports))
    record = TrialRecord(f"t{index:04d}", {"lr": 0.01, "width": 64}, TrialStatus.COMPLETED, 1e-6 * reports,
                         {"accuracy": 0.9}, {"energy_source": "cpu-time-estimate", "duration_s": 2.0 * reports},
                         n_reports=reports, started_at=start, ended_at=start + 2.0 * reports + 1,
                         run_started_at=start, energy_timeline=timeline)
    points = []
    for i in range(reports):
        points.append((i + 1, start + 2.0 * i + 1, {"accuracy": 0.5 + 0.04 * i, "loss": 1.0 / (i + 1)}))
        points.append((i + 1, timeline[i][0], {"energy_kwh": timeline[i][1], "power_w": 1.8}))
    return record, points


def _tracker(root: Path, name: str) -> StudyTracker:
    config = load_config({"objective": "objectives.tabular_mlp:tabular_mlp", "budget_kwh": 1.0, "name": name,
                          "search_space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1}, "width": 64},
                          "mlflow": {"tracking_uri": f"sqlite:///{root / (name + '.db')}"}, "output_dir": root})
    tracker = StudyTracker(config, root)
    tracker.start_study(config)
    return tracker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--reports", type=int, default=10, help="reports (and heartbeats) per trial")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        live, end = _tracker(root, "live"), _tracker(root, "end")
        live_ms, end_ms = [], []
        start = time.time()
        for index in range(args.trials):
            record, points = _trial(index, args.reports, start)
            cpu = time.process_time()
            run_id = live.open_trial(record.trial_id, record.params, record.started_at)
            for beat in range(args.reports):
                live.log_points(run_id, points[2 * beat: 2 * beat + 2])
            live.log_trial(record, points, run_id, len(points))
            live_ms.append(1000 * (time.process_time() - cpu))
            cpu = time.process_time()
            end.log_trial(record, points)
            end_ms.append(1000 * (time.process_time() - cpu))
    live_median, end_median = statistics.median(live_ms), statistics.median(end_ms)
    print(f"{args.trials} trials x {args.reports} reports, SQLite store, driver CPU per trial (median):")
    print(f"  live:       {live_median:8.1f} ms   (p90 {sorted(live_ms)[int(0.9 * len(live_ms))]:.1f})")
    print(f"  at the end: {end_median:8.1f} ms   (p90 {sorted(end_ms)[int(0.9 * len(end_ms))]:.1f})")
    print(f"  live / at the end: {live_median / end_median:.2f}x; "
          f"live cost per heartbeat ~{(live_median - end_median) / args.reports:.1f} ms")


if __name__ == "__main__":
    main()
