"""MLflow records that survive a tracking server outage: queued on disk, replayed later.

A study must not stop, nor lose its books, because the tracking server went away. When
writing a record (a trial's child run, the study's totals, its failure) fails for a
reason that may pass (connection refused, timeout, 5xx), the record is appended to
``mlflow-queue.jsonl`` in the study's output directory, and every later record goes
behind it, so the order is kept. After each trial the queue is replayed; whatever is
still there when the study ends is named in a warning, and ``greentune flush
OUTPUT_DIR`` replays it later. Requests fail fast (short timeout, one retry) so that a
down server costs each record a second, not the minutes of MLflow's default retries.

A replayed trial first deletes any child run a half-finished attempt left for it, so a
trial is never recorded twice.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.atomic import atomic_write
from tuner.envvars import scoped_env
from tuner.errors import TrackingUnavailable

if TYPE_CHECKING:
    from tuner.config import StudyConfig
    from tuner.result import TuneResult
    from tuner.study.record import TrialRecord
    from tuner.tracking.mlflow import MetricPoint, StudyTracker

logger = logging.getLogger("tuner")

QUEUE_FILE = "mlflow-queue.jsonl"
REJECTED_FILE = "mlflow-rejected.jsonl"
# Fail fast against a down server; a user's own settings win.
FAIL_FAST_ENV = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
}
# The server answered and refused the record: retrying cannot help.
_PERMANENT = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST",
                        "INVALID_STATE", "BAD_REQUEST", "MALFORMED_REQUEST"})




def fail_fast() -> AbstractContextManager[None]:
    """MLflow HTTP requests with a short timeout and one retry, inside the block only."""
    return scoped_env(FAIL_FAST_ENV, override=False)


def open_tracker(config: StudyConfig, output_dir: Path) -> QueuedTracker:
    """The study's tracker, queueing to ``output_dir`` whatever the server cannot take."""
    from tuner.tracking.mlflow import StudyTracker

    try:
        with fail_fast():
            tracker = StudyTracker(config, output_dir)
    except Exception as exc:  # noqa: BLE001 - any failure here is "cannot track"
        from tuner.redact import redact

        raise TrackingUnavailable(
            redact(f"MLflow at {config.tracking_uri} is unreachable, so the study did not start: {exc}")
        ) from exc
    return QueuedTracker(tracker, output_dir / QUEUE_FILE)


def is_transient(exc: BaseException) -> bool:
    """Whether a failed MLflow call may succeed later (server down, timeout, 5xx, disk)."""
    code = getattr(exc, "error_code", None)
    return code not in _PERMANENT


class DiskQueue:
    """Records waiting for MLflow, one JSON object per line, oldest first."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        lines = self.path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def __len__(self) -> int:
        return len(self.records())

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def replace(self, records: list[dict[str, Any]]) -> None:
        if not records:
            self.path.unlink(missing_ok=True)
            return
        text = "".join(json.dumps(r, default=str) + "\n" for r in records)
        atomic_write(self.path, lambda handle: handle.write(text))


class QueuedTracker:
    """A :class:`StudyTracker` whose records wait on disk while MLflow is unreachable."""

    def __init__(self, tracker: StudyTracker, queue_path: Path) -> None:
        self.tracker = tracker
        self.queue = DiskQueue(queue_path)
        self._outage = False
        self._live_failing = False  # warned once until a live write succeeds again
        self.flushed_run_ids: dict[str, str] = {}  # trial id -> child run id, for queued trials written since

    def __getattr__(self, name: str) -> Any:  # run_id, tracking_uri, ui_command, ...
        if name == "tracker":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.tracker, name)

    def start_study(self, config: StudyConfig) -> str:
        with fail_fast():
            return self.tracker.start_study(config)

    def resume_study(self, run_id: str, resumes: int) -> str:
        with fail_fast():
            return self.tracker.resume_study(run_id, resumes)

    def open_trial(self, trial_id: str, params: Mapping[str, Any], started_at: float) -> str:
        """A running trial's child run id, or ``""`` when MLflow cannot take it now.

        Live records are not queued: the trial's final record, which is, carries its
        whole history, so a trial MLflow missed while it ran is written in full later.
        """
        return self._live("open a child run for", lambda: self.tracker.open_trial(trial_id, params, started_at)) or ""

    def log_points(self, run_id: str, points: Sequence[MetricPoint]) -> bool:
        """Whether a running trial's new metric points were written (see :meth:`open_trial`)."""
        return self._live("log live metrics of", lambda: self.tracker.log_points(run_id, points) or True) is True

    def log_trial(self, entry: TrialRecord, history: Sequence[MetricPoint], run_id: str = "",
                  logged: int = 0) -> str:
        """The trial's child run id, or ``""`` while the record waits in the queue.

        A queued record holds the whole history: its replay replaces the live run.
        """
        record = {"kind": "trial", "entry": entry.to_json(), "history": [[s, t, dict(m)] for s, t, m in history]}
        return self._submit(record, lambda: self.tracker.log_trial(entry, history, run_id, logged))

    def finish_study(self, result: TuneResult, artifacts: list[Path]) -> None:
        record = {"kind": "finish", "result": _result_record(result), "artifacts": [str(p) for p in artifacts]}
        self._submit(record, lambda: self.tracker.finish_study(result, artifacts))
        self._warn_if_pending()

    def fail_study(self, error: str) -> None:
        self._submit({"kind": "fail", "error": error}, lambda: self.tracker.fail_study(error))
        self._warn_if_pending()

    def flush(self) -> int:
        """Replay the queue in order; the number of records still waiting."""
        with fail_fast():
            remaining, _ = replay(self.tracker, self.queue, on_trial=self.flushed_run_ids.__setitem__)
        if not remaining and self._outage:
            logger.warning("MLflow at %s is back: queued records flushed", self.tracker.tracking_uri)
            self._outage = False
        return remaining

    def _live(self, what: str, write: Callable[[], Any]) -> Any:
        """A best-effort live write: skipped while records wait, never queued."""
        if self._outage or len(self.queue):
            return None
        try:
            with fail_fast():
                written = write()
        except Exception as exc:  # noqa: BLE001 - the final record carries what this one had
            if not self._live_failing:
                logger.warning("could not %s a running trial in MLflow (%s); each trial is written in "
                               "full when it ends", what, _short(exc))
            self._live_failing = True
            return None
        self._live_failing = False
        return written

    def _submit(self, record: dict[str, Any], write: Callable[[], str | None]) -> str:
        if len(self.queue):
            self.queue.append(record)  # behind the older records
            self.flush()
            return ""
        try:
            with fail_fast():
                return write() or ""
        except Exception as exc:  # noqa: BLE001 - a tracking failure must not stop the study
            if not is_transient(exc):
                logger.warning("MLflow refused a %s record, dropped: %s", record["kind"], exc)
                return ""
            try:
                self.queue.append(record)
            except OSError as disk:
                logger.error("MLflow at %s is unreachable (%s) and the record could not be queued in %s "
                             "either (%s): this %s record is only in the study's files",
                             self.tracker.tracking_uri, _short(exc), self.queue.path, disk, record["kind"])
                return ""
            if not self._outage:
                logger.warning("MLflow at %s is unreachable (%s); records are queued in %s and retried "
                               "after every trial", self.tracker.tracking_uri, _short(exc), self.queue.path)
            self._outage = True
            return ""

    def _warn_if_pending(self) -> None:
        waiting = len(self.queue)
        if waiting:
            out = self.queue.path.parent
            logger.warning(
                "MLflow at %s never came back: %d record(s) of this study are queued in %s; "
                "replay them with `greentune flush %s` once it is reachable",
                self.tracker.tracking_uri, waiting, self.queue.path, out,
            )


def apply(tracker: StudyTracker, record: dict[str, Any]) -> str | None:
    """Write one record to MLflow; a trial's child run id."""
    kind = record["kind"]
    if kind == "trial":
        entry = _entry(record["entry"])
        return tracker.log_trial(entry, [_point(item, entry) for item in record["history"]])
    if kind == "finish":
        present = [Path(p) for p in record["artifacts"] if Path(p).exists()]
        tracker.finish_study(_result(record["result"]), present)
    elif kind == "fail":
        tracker.fail_study(record["error"])
    else:
        raise ValueError(f"unknown queued record kind '{kind}'")
    return None


def replay(tracker: StudyTracker, queue: DiskQueue,
           on_trial: Callable[[str, str], None] | None = None) -> tuple[int, int]:
    """Write queued records in order until one fails; ``(records left, records written)``.

    ``on_trial(trial_id, run_id)`` hears of each trial's child run as it is written, so the
    study's own files can name it.
    """
    records = queue.records()
    done = 0
    rejected: list[dict[str, Any]] = []
    for record in records:
        try:
            if record["kind"] == "trial":
                drop_partial_child(tracker, record["entry"]["trial_id"])
            run_id = apply(tracker, record)
            if run_id and on_trial is not None:
                on_trial(record["entry"]["trial_id"], run_id)
        except Exception as exc:  # noqa: BLE001 - keep it queued, or set it aside if refused
            if is_transient(exc):
                break
            logger.warning("MLflow refused a queued %s record; kept in %s: %s", record["kind"],
                           queue.path.with_name(REJECTED_FILE), exc)
            rejected.append(record)
        done += 1
    if rejected:
        with queue.path.with_name(REJECTED_FILE).open("a") as handle:
            handle.writelines(json.dumps(r, default=str) + "\n" for r in rejected)
    if done:
        queue.replace(records[done:])
    return len(records) - done, done - len(rejected)


def flush_output_dir(output_dir: Path) -> tuple[int, int]:
    """Replay a study's queue to the run named in its ``study.json``; ``(left, written)``.

    The child run ids written are booked in ``ledger.json`` and ``trials.csv`` too.
    """
    state = json.loads((output_dir / "study.json").read_text())
    from tuner.tracking.mlflow import StudyTracker

    run_ids: dict[str, str] = {}
    try:
        with fail_fast():
            tracker = StudyTracker.for_run(state["tracking_uri"], state["mlflow_run_id"])
            return replay(tracker, DiskQueue(output_dir / QUEUE_FILE), on_trial=run_ids.__setitem__)
    finally:
        if run_ids:
            from tuner.study.files import StudyFiles

            StudyFiles(output_dir).book_run_ids(run_ids)


def drop_partial_child(tracker: StudyTracker, trial_id: str) -> None:
    """Delete a child run an interrupted attempt left for this trial, so it is logged once."""
    runs = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{tracker.run_id}' and tags.`greentune.trial_id` = '{trial_id}'",
    )
    for run in runs:
        tracker.client.delete_run(run.info.run_id)


UNBOOKED_TAG = "greentune.unbooked"


def close_unbooked_children(tracker: StudyTracker, booked: set[str]) -> list[str]:
    """End the child runs a dead driver opened for trials its books never held.

    A trial's run opens when it starts; one that started after the driver's last save of
    ``ledger.json`` and wrote no last word (:mod:`tuner.study.spool`) is in no ledger. Its
    run would stay RUNNING for good: it is ended as KILLED and tagged, not deleted, since
    the energy it logged was spent. Returns the trial ids.
    """
    runs = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{tracker.run_id}'")
    closed = []
    for run in runs:
        trial_id = run.data.tags.get("greentune.trial_id")
        if trial_id is None or trial_id in booked:
            continue
        tracker.client.set_tag(run.info.run_id, UNBOOKED_TAG, "started after the dead driver's last save; not in the books")
        if run.info.status == "RUNNING":
            tracker.client.set_terminated(run.info.run_id, status="KILLED")
        closed.append(trial_id)
    return closed


def _entry(data: dict[str, Any]) -> TrialRecord:
    from tuner.study.record import TrialRecord

    return TrialRecord.from_json({**data, "mlflow_run_id": None})


def _point(item: Sequence[Any], entry: TrialRecord) -> MetricPoint:
    """A queued history point; records queued before points had a time get the trial's end."""
    step, *rest = item
    at = rest[0] if len(rest) == 2 else None
    return int(step), float(at if at is not None else entry.ended_at or entry.started_at), dict(rest[-1])


def _result_record(result: TuneResult) -> dict[str, Any]:
    """A result as JSON: its table, its config and its totals (see :meth:`TuneResult.from_state`)."""
    from tuner.config import config_dump

    return {"trials": json.loads(result.trials.to_json(orient="records")),
            "config": config_dump(result.config) if result.config is not None else None,
            "totals": result.totals()}


def _result(data: dict[str, Any]) -> TuneResult:
    import pandas as pd

    from tuner.config import config_from_dump
    from tuner.result import TuneResult

    return TuneResult.from_state(pd.DataFrame(data["trials"]), config_from_dump(data["config"]), data["totals"])


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
