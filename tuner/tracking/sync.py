"""A study's books in its MLflow parent run, so that ``--resume`` works on a new machine.

The study's files (``study.json``, ``ledger.json``, ``searcher.json``, ``trials.csv``)
live in ``output_dir``, on the driver's disk. On a cluster that disk dies with the head
node, and with it every way to resume. Users already have a durable store next to the
study: the MLflow parent run's artifact store (S3, a tracking server's proxied
artifacts). So the driver copies the files there, under ``study/``, as trials are booked
(at most every :data:`SYNC_EVERY_S` seconds) and when the study ends; and a resume that
finds no study in ``output_dir`` looks the run up by the study's name and pulls them
back first (:func:`restore_study`), as ``greentune pull`` does by hand.

Two rules keep the books: a failed upload is a warning, never an error (the local files
are whole either way, and the next upload carries everything); and a pull never
replaces a file that exists locally, so a newer local ledger always wins.
When the MLflow store or its artifacts live in ``output_dir`` (the default SQLite store;
any local store, whose artifacts greentune keeps in ``output_dir/mlartifacts``) a copy
there would die with the original, so nothing is synced.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from tuner.atomic import atomic_write
from tuner.errors import ConfigError
from tuner.study.files import LEDGER_FILE, SEARCHER_FILE, STATE_FILE, TRIALS_FILE
from tuner.tracking.queue import UNBOOKED_TAG, fail_fast

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

logger = logging.getLogger("tuner")

SYNC_DIR = "study"
"""The parent run's artifact folder that holds the study's files."""
SYNCED_FILES = (SEARCHER_FILE, TRIALS_FILE, LEDGER_FILE, STATE_FILE)
"""Uploaded in this order: a resume reconciles an optimiser snapshot older than the ledger,
so the ledger goes after the snapshot; ``study.json`` last, as the mark of a whole copy."""
SYNC_TAG = "greentune.synced_at"
"""Unix time of the parent run's last whole copy; a run with it can be restored."""
SYNC_EVERY_S = 10.0
"""At most one upload per this many seconds while trials run (plus one when the study ends)."""
_BACKOFF_MAX_S = 300.0


class StudySync:
    """Copies a study's files to its MLflow parent run's artifacts; never raises.

    ``push()`` uploads now, ``maybe_push()`` only if :data:`SYNC_EVERY_S` passed since the
    last upload. A failure is logged once per outage and retried later, backing off to
    every five minutes, so a down server does not slow every trial by its timeout.
    """

    def __init__(self, tracking_uri: str, run_id: str, directory: Path, every_s: float | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.directory = directory
        self.every_s = SYNC_EVERY_S if every_s is None else every_s
        self.enabled = bool(run_id) and not store_inside(tracking_uri, directory)
        self._artifacts_checked = False
        self._last_push = -float("inf")
        self._retry_in = self.every_s
        self._failing = False
        self.pushes = 0

    def maybe_push(self) -> bool:
        """Upload if the last upload (or failed attempt) is older than the interval."""
        if not self.enabled or time.monotonic() - self._last_push < self._retry_in:
            return False
        return self.push()

    def push(self) -> bool:
        """Upload the study's files now; ``True`` when MLflow has a whole copy."""
        if not self.enabled:
            return False
        self._last_push = time.monotonic()
        try:
            with fail_fast():
                copied = self._upload()
        except Exception as exc:  # noqa: BLE001 - the local files are whole; a later upload carries all
            if not self._failing:
                logger.warning("could not copy the study's files to MLflow run %s (%s); they are whole in %s, "
                               "and the copy is retried", self.run_id, _short(exc), self.directory)
            self._failing = True
            self._retry_in = min(max(2 * self._retry_in, 5.0), _BACKOFF_MAX_S)
            return False
        if self._failing:
            logger.warning("the study's files reached MLflow run %s again", self.run_id)
        self._failing = False
        self._retry_in = self.every_s
        self.pushes += copied
        return copied

    def _upload(self) -> bool:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri)
        if not self._artifacts_checked:
            inside = store_inside(client.get_run(self.run_id).info.artifact_uri, self.directory)
            self._artifacts_checked = True
            if inside:  # a local store: greentune keeps its artifacts in output_dir/mlartifacts
                self.enabled = False  # a copy there would die with the output directory
                logger.info("the study's MLflow artifacts are in %s itself; its files are not copied there",
                            self.directory)
                return False
        with tempfile.TemporaryDirectory(prefix="greentune-sync-") as tmp:
            snapshot = Path(tmp)
            present = [name for name in SYNCED_FILES if (self.directory / name).is_file()]
            for name in present:  # a copy first: the driver replaces its files as trials end
                shutil.copyfile(self.directory / name, snapshot / name)
            for name in present:  # one at a time, in SYNCED_FILES order
                client.log_artifact(self.run_id, str(snapshot / name), SYNC_DIR)
        client.set_tag(self.run_id, SYNC_TAG, f"{time.time():.3f}")
        return True


def find_study_run(tracking_uri: str, study_name: str, experiment: str | None = None) -> str:
    """The id of the newest parent run of ``study_name`` whose files were synced.

    It is looked for in ``experiment`` (default ``greentune-<study_name>``, as a study
    names its experiment). Raises :class:`ConfigError` when there is none.
    """
    from mlflow.tracking import MlflowClient

    name = experiment or f"greentune-{study_name}"
    with fail_fast():
        client = MlflowClient(tracking_uri=tracking_uri)
        found = client.get_experiment_by_name(name)
        runs = [] if found is None else client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`greentune.kind` = 'study' and attributes.run_name = '{_quoted(study_name)}'",
            order_by=["attributes.start_time DESC"],
        )
    synced = [run for run in runs if SYNC_TAG in run.data.tags]
    if not synced:
        where = f"experiment '{name}'" if found is not None else f"MLflow (no experiment '{name}')"
        raise ConfigError(f"no synced study named '{study_name}' in {where} at {_safe(tracking_uri)}")
    return str(synced[0].info.run_id)


def pull_study(tracking_uri: str, run_id: str, directory: Path) -> list[str]:
    """Download the study's files from ``run_id`` into ``directory``; the names written.

    A file that exists in ``directory`` is kept as it is: the local books are at least as
    new as any copy. Every JSON file is checked before anything is written, so a damaged
    copy writes nothing.
    """
    from mlflow.exceptions import MlflowException

    with fail_fast(), tempfile.TemporaryDirectory(prefix="greentune-pull-") as tmp:
        client = _client(tracking_uri)
        try:
            local = Path(client.download_artifacts(run_id, SYNC_DIR, tmp))
        except MlflowException as exc:
            raise ConfigError(f"MLflow run {run_id} has no synced study files ({_short(exc)})") from None
        if not (local / STATE_FILE).is_file():
            raise ConfigError(f"MLflow run {run_id} has no {SYNC_DIR}/{STATE_FILE}: its files were never synced")
        for name in (STATE_FILE, LEDGER_FILE, SEARCHER_FILE):
            if (local / name).is_file():
                try:
                    json.loads((local / name).read_text())
                except ValueError as exc:
                    raise ConfigError(f"the synced {name} of MLflow run {run_id} is damaged ({exc}); "
                                      "nothing was restored") from None
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name in SYNCED_FILES[::-1]:  # study.json first: it makes the folder a study's
            source, target = local / name, directory / name
            if source.is_file() and not target.exists():
                text = source.read_text()
                atomic_write(target, lambda handle, text=text: handle.write(text))
                written.append(name)
    return written


def restore_study(tracking_uri: str, study_name: str, directory: Path, experiment: str | None = None) -> str:
    """Before a resume: fill an output directory without a study from the study's MLflow run.

    Returns the run id restored from. Raises :class:`ConfigError` (the resume cannot go
    on) when MLflow has no synced copy.
    """
    run_id = find_study_run(tracking_uri, study_name, experiment)
    pull_study(tracking_uri, run_id, directory)
    try:
        _flag_unbooked_trials(tracking_uri, run_id, directory)
    except Exception as exc:  # noqa: BLE001 - a check for the log; the resume goes on without it
        logger.warning("could not compare MLflow's trial runs with the restored ledger: %s", _short(exc))
    return run_id


def _flag_unbooked_trials(tracking_uri: str, run_id: str, directory: Path) -> None:
    """Trials that ended after the last copy have a child run but no place in the restored
    ledger: their energy is not counted on. Say so, and tag them, rather than count blind."""
    books = json.loads((directory / LEDGER_FILE).read_text()) if (directory / LEDGER_FILE).is_file() else {}
    booked = {str(e.get("trial_id")) for e in books.get("entries", [])}
    client = _client(tracking_uri)
    with fail_fast():
        experiment_id = client.get_run(run_id).info.experiment_id
        children = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
        unbooked = [run for run in children if run.data.tags.get("greentune.trial_id") not in booked]
        for run in unbooked:
            client.set_tag(run.info.run_id, UNBOOKED_TAG, "ended after the study's last copy to MLflow")
    if unbooked:
        kwh = sum(float(run.data.metrics.get("energy_kwh", 0.0)) for run in unbooked)
        logger.warning("%d trial run(s) of MLflow run %s ended after the study's files were last copied there "
                       "(%.3g kWh as logged); the restored ledger does not count them, and they are tagged "
                       "greentune.unbooked", len(unbooked), run_id, kwh)


def _client(tracking_uri: str) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def store_inside(uri: str, directory: Path) -> bool:
    """Whether a tracking or artifact URI is a local path inside ``directory``."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = unquote(parsed.path) if parsed.scheme else uri
    elif parsed.scheme == "sqlite":
        path = unquote(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else ""
    else:
        return False
    if not path:
        return False
    resolved, root = Path(path).resolve(), directory.resolve()
    return resolved == root or root in resolved.parents


def _quoted(value: str) -> str:
    return value.replace("'", "\\'")


def _safe(uri: str) -> str:
    from tuner.redact import redact

    return redact(uri)


def _short(exc: BaseException) -> str:
    """The first line of an error, secrets masked: MLflow's errors quote the URL, password included."""
    from tuner.redact import redact

    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return redact(text)[:300]


__all__ = ["SYNC_DIR", "SYNC_EVERY_S", "SYNC_TAG", "StudySync", "find_study_run", "pull_study", "restore_study",
           "store_inside"]
