"""A study's files: the one place that reads and writes them, atomically.

``study.json`` says what the study is (MLflow run, config, how often it was resumed,
and its totals once it finished), ``ledger.json`` holds every trial's record,
``searcher.json`` the optimiser's own snapshot where it has one, and ``trials.csv`` the
table for people. A resumed driver (``tune(..., resume=True)``) reads the first three
back; ``greentune report DIR`` reads the first and the last. Every write goes through
:func:`~tuner.atomic.atomic_write`, so a killed driver or a full disk leaves whole files.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from tuner.atomic import atomic_write
from tuner.redact import redact_obj
from tuner.study.record import ENERGY_METRIC, TrialRecord

STATE_FILE = "study.json"
TRIALS_FILE = "trials.csv"
LEDGER_FILE = "ledger.json"
SEARCHER_FILE = "searcher.json"


class StudyFiles:
    """The files of the study in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.state = directory / STATE_FILE
        self.ledger = directory / LEDGER_FILE
        self.searcher = directory / SEARCHER_FILE
        self.trials = directory / TRIALS_FILE

    def read_state(self) -> dict[str, Any]:
        return read_json(self.state)

    def write_state(self, state: dict[str, Any]) -> None:
        """``study.json``, secrets masked (it holds the config and the tracking URI)."""
        write_json(self.state, redact_obj(state))

    def read_ledger(self) -> dict[str, Any]:
        return read_json(self.ledger)

    def write_ledger(self, books: dict[str, Any]) -> None:
        """``ledger.json``, secrets masked (trial errors and parameters may quote one)."""
        write_json(self.ledger, redact_obj(books))

    def write_trials(self, frame: pd.DataFrame) -> None:
        atomic_write(self.trials, lambda handle: frame.to_csv(handle, index=False))

    def read_trials(self) -> pd.DataFrame:
        return read_trials_csv(self.trials)

    def book_run_ids(self, run_ids: dict[str, str]) -> None:
        """Name flushed trials' child runs in ``ledger.json`` and ``trials.csv``.

        ``trials.csv`` is edited as text, one column, so nothing else in it changes form.
        """
        if self.ledger.exists():
            books = self.read_ledger()
            for entry in books.get("entries", []):
                if not entry.get("mlflow_run_id") and entry["trial_id"] in run_ids:
                    entry["mlflow_run_id"] = run_ids[entry["trial_id"]]
            self.write_ledger(books)
        if not self.trials.exists():
            return
        rows = list(csv.reader(io.StringIO(self.trials.read_text(), newline="")))
        if not rows or "trial_id" not in rows[0] or "mlflow_run_id" not in rows[0]:
            return
        trial, run = rows[0].index("trial_id"), rows[0].index("mlflow_run_id")
        for row in rows[1:]:
            if len(row) > max(trial, run) and not row[run] and row[trial] in run_ids:
                row[run] = run_ids[row[trial]]
        atomic_write(self.trials, lambda handle: csv.writer(handle, lineterminator="\n").writerows(rows))


def trials_frame(records: Iterable[TrialRecord], param_names: list[str], metric: str) -> pd.DataFrame:
    """Trial records as the ``trials.csv`` table: one row per trial, parameters first.

    Parameters come first and nothing after them may reuse their names: greentune's own
    columns are reserved names (``RESERVED_NAMES`` in :mod:`tuner.study.record`) or carry
    a prefix.
    """
    rows = []
    for record in records:
        rows.append({
            "trial_id": record.trial_id,
            "status": record.status.value,
            **{name: record.params.get(name) for name in param_names},
            metric: record.metrics.get(metric),
            **{k: v for k, v in record.metrics.items() if k != metric},
            ENERGY_METRIC: record.energy_kwh,
            "n_reports": record.n_reports,  # tuner.report() calls
            "error": redact_obj(record.error),
            "stop_reason": record.stop_reason,
            **record.info,
            "mlflow_run_id": record.mlflow_run_id or None,
        })
    columns = ["trial_id", "status", *param_names, metric, ENERGY_METRIC]
    return pd.DataFrame(rows, columns=None if rows else columns)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as JSON at ``path``, never half-written (a full disk raises ``OutputWriteError``)."""
    atomic_write(path, lambda handle: handle.write(json.dumps(data, indent=2, default=str)))


def read_trials_csv(path: Path | str) -> pd.DataFrame:
    """``trials.csv`` with its id columns as text: a Ray trial id such as ``5e123456`` would
    otherwise be read as a number (here, infinity). Floats are parsed to the exact value
    written, so a report rebuilt from the file computes on the live study's numbers."""
    return pd.read_csv(path, dtype={"trial_id": str, "mlflow_run_id": str}, float_precision="round_trip")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
