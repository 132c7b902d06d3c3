"""A study's books on disk, written atomically so that a killed driver leaves them whole.

``study.json`` says what the study is (MLflow run, config, how often it was resumed),
``ledger.json`` holds every trial's energy and outcome, ``searcher.json`` the
optimiser's own snapshot where it has one, and ``trials.csv`` the table for people.
A resumed driver (``tune(..., resume=True)``) reads the first three back.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

STATE_FILE = "study.json"
TRIALS_FILE = "trials.csv"
LEDGER_FILE = "ledger.json"
SEARCHER_FILE = "searcher.json"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as JSON at ``path``: a temporary file renamed over it, never half-written."""
    _replace(path, lambda handle: handle.write(json.dumps(data, indent=2, default=str)))


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    _replace(path, lambda handle: frame.to_csv(handle, index=False))


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _replace(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
