"""A study's books on disk, written atomically so that a killed driver leaves them whole.

``study.json`` says what the study is (MLflow run, config, how often it was resumed),
``ledger.json`` holds every trial's energy and outcome, ``searcher.json`` the
optimiser's own snapshot where it has one, and ``trials.csv`` the table for people.
A resumed driver (``tune(..., resume=True)``) reads the first three back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tuner.atomic import atomic_write

STATE_FILE = "study.json"
TRIALS_FILE = "trials.csv"
LEDGER_FILE = "ledger.json"
SEARCHER_FILE = "searcher.json"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as JSON at ``path``, never half-written (a full disk raises ``OutputWriteError``)."""
    atomic_write(path, lambda handle: handle.write(json.dumps(data, indent=2, default=str)))


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda handle: frame.to_csv(handle, index=False))


def read_trials_csv(path: Path | str) -> pd.DataFrame:
    """``trials.csv`` with its id columns as text: a Ray trial id such as ``5e123456`` would
    otherwise be read as a number (here, infinity)."""
    return pd.read_csv(path, dtype={"trial_id": str, "mlflow_run_id": str})


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())

