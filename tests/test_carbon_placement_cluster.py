"""Carbon-aware placement on a real multi-node Ray cluster with two zones fed by two CSV traces.

Three ``ray start`` nodes on this machine: a head with no CPUs (so no trial runs
unplaced), a one-CPU node in zone FR and a two-CPU node in zone DE, each given its zone
as the custom resource ``zone:<name>`` as docs/clusters.md says. FR's trace is cleaner
(50 g/kWh against DE's 400; DE is listed first in the config, so order does not decide).
Studies run as ``greentune run`` subprocesses; this process never joins the cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.local_cluster import LocalCluster, WorkerSpec
from tuner.study.files import read_trials_csv

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
FR_MARKER, DE_MARKER = 1.0, 2.0
FR_G, DE_G = 50.0, 400.0
PUE = 1.3


@pytest.fixture(scope="module")
def cluster():
    workers = [
        WorkerSpec(num_cpus=1, resources={"zone:FR": 1000}, env={"GREENTUNE_TEST_NODE": str(int(FR_MARKER))}),
        WorkerSpec(num_cpus=2, resources={"zone:DE": 1000}, env={"GREENTUNE_TEST_NODE": str(int(DE_MARKER))}),
    ]
    with LocalCluster.start(head_cpus=0, workers=workers) as running:
        yield running
    assert not running.pids(), "cluster processes survived teardown"


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> dict[str, Path]:
    """Two flat 15-minute traces around now, in the csv provider's 'Time,Carbon Intensity' layout."""
    root = tmp_path_factory.mktemp("traces")
    start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    times = [(start + i * timedelta(minutes=15)).strftime("%Y-%m-%d %H:%M:%S") for i in range(4 * 24 * 3)]
    out = {}
    for zone, g in (("DE", DE_G), ("FR", FR_G)):
        out[zone] = root / f"{zone.lower()}.csv"
        pd.DataFrame({"Time": times, "Carbon Intensity": [g] * len(times)}).to_csv(out[zone], index=False)
    return out


def _run(cluster: LocalCluster, traces: dict[str, Path], root: Path, trials: int, at_once: int) -> Path:
    study = root / "study.yaml"
    root.mkdir(parents=True, exist_ok=True)
    study.write_text(yaml.safe_dump({
        "name": root.name,
        "objective": "tests.objectives_for_tests:zone_probe",
        "metric": "accuracy",
        "budget_kwh": 1.0,
        "strategy": "random",
        "seed": 0,
        "max_trials": trials,
        "max_concurrent_trials": at_once,
        "reuse_trial_processes": False,
        "resources_per_trial": {"cpu": 1},
        "pue": PUE,
        "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "output_dir": str(root / "out"),
        "carbon": {"placement": "lowest", "zones": {
            "DE": {"provider": "csv", "csv_path": str(traces["DE"])},
            "FR": {"provider": "csv", "csv_path": str(traces["FR"])},
        }},
    }))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "tuner.cli", "run", str(study), "--address", cluster.address, "--quiet"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return root / "out"


def _checked_trials(out: Path, trials: int) -> pd.DataFrame:
    """The trials table, after the checks every placed study must pass: each trial ran on a
    zoned node, its recorded zone is that node's, the objective never saw the placement key,
    and its CO2 is its energy at its own zone's intensity."""
    table = read_trials_csv(out / "trials.csv")
    assert len(table) == trials and (table["status"] == "completed").all(), table
    zone_of_marker = {FR_MARKER: "FR", DE_MARKER: "DE"}
    assert set(table["node_marker"]) <= set(zone_of_marker)  # never the (CPU-less, zoneless) head
    assert (table["carbon_zone"] == table["node_marker"].map(zone_of_marker)).all(), table
    assert (table["saw_zone_key"] == 0).all()
    intensity = table["carbon_zone"].map({"FR": FR_G, "DE": DE_G})
    assert table["co2_kg"].to_numpy() == pytest.approx((table["energy_kwh"] * intensity * PUE / 1000).to_numpy())
    assert table["carbon_intensity_mean"].to_numpy() == pytest.approx(intensity.to_numpy())
    assert (table["energy_kwh"] > 0).all()
    return table.sort_values("t_start").reset_index(drop=True)


def test_trials_spill_to_the_other_zone_when_the_cleaner_is_full(cluster, traces, tmp_path: Path) -> None:
    out = _run(cluster, traces, tmp_path / "three-at-once", trials=6, at_once=3)
    table = _checked_trials(out, 6)
    # placement times (the gate's suggestion) and ends, from the ledger
    records = {r["trial_id"]: r for r in json.loads((out / "ledger.json").read_text())["entries"]}
    placed = table.assign(placed_at=[records[t]["started_at"] for t in table["trial_id"]],
                          ended_at=[records[t]["ended_at"] for t in table["trial_id"]]).sort_values("placed_at")
    first = placed.iloc[:3]
    # no throughput lost: the first three were all placed before any ended, one on FR's
    # one CPU and two on DE's two (not held back until FR was free again)
    assert sorted(first["carbon_zone"]) == ["DE", "DE", "FR"], placed[["carbon_zone", "placed_at", "ended_at"]]
    assert first["placed_at"].max() < first["ended_at"].min()
    # FR's single CPU never ran two objectives at once
    fr = table[table["carbon_zone"] == "FR"].sort_values("t_start")
    assert (fr["t_start"].to_numpy()[1:] >= fr["t_end"].to_numpy()[:-1] - 0.05).all()
    # every trial sent to DE was placed while FR held a trial
    fr_busy = placed[placed["carbon_zone"] == "FR"][["placed_at", "ended_at"]].to_numpy()
    for when in placed.loc[placed["carbon_zone"] == "DE", "placed_at"]:
        assert any(start <= when <= end + 1.0 for start, end in fr_busy), (when, fr_busy)
    state = json.loads((out / "study.json").read_text())
    assert state["carbon_placement_spilled"] == (table["carbon_zone"] == "DE").sum()
    # (one trial at a time, every trial would go to FR: the gate's ranking and slot count
    # are tested without a cluster in tests/test_carbon_placement.py)
