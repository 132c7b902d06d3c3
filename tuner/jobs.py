"""A study from a laptop to a running Ray cluster: ``greentune submit`` and ``greentune status``.

Both speak to the cluster's job server (Ray Jobs, the dashboard's port 8265) with Ray's
own ``JobSubmissionClient``, as ``ray job submit`` does. ``submit`` checks the study file
here first (a bad one is refused with one line, before anything reaches the cluster),
ships the working directory without what must never leave the laptop (:data:`EXCLUDES`:
``.env`` files, study outputs, MLflow stores, ``.git``) and runs ``greentune run`` as the
job's driver on the head. ``status`` reads the job's state, and the study's progress from
the progress lines the driver prints into the job's log; ``--follow`` tails the log.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import ConfigError, JobServerUnavailable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ray.job_submission import JobSubmissionClient

EXCLUDES = [
    # secrets: the MLflow server's passwords, any local env file
    "**/.env", "**/.env.*",
    # study outputs and tracking stores: trials, ledgers, reports, MLflow runs
    "**/greentune-runs", "**/mlruns", "**/mlartifacts", "**/*.db", "**/mlflow-queue.jsonl",
    "**/mlflow-rejected.jsonl",
    # version control and tooling
    ".git", ".github", ".venv", "**/__pycache__", "**/*.pyc", ".pytest_cache", ".ruff_cache", ".hypothesis",
    "build", "dist", "**/*.egg-info",
]
"""What ``greentune submit`` never ships to the cluster: the ``.dockerignore`` list (Ray
applies these gitignore-style patterns, and the working directory's own ``.gitignore``)."""

PROGRESS = re.compile(r"\[greentune\] trials: (?P<done>\d+) done, (?P<running>\d+) running, (?P<queued>\d+) queued, "
                      r"(?P<failed>\d+) failed \| energy (?P<kwh>\S+) / (?P<budget>\S+) kWh")
"""The driver's progress line (:func:`tuner.study.callback.progress_line`), as it reaches the job log."""
SUMMARY = re.compile(r"^energy: (?P<kwh>\S+) kWh of (?P<budget>\S+) kWh budget", re.MULTILINE)
"""The energy line of the study's closing summary (:meth:`tuner.TuneResult.summary`): the final figure."""
SUMMARY_TRIALS = re.compile(r"^trials: \d+ \((?P<counts>[^)]*)\)$", re.MULTILINE)
"""The summary's trial line, ``trials: 4 (2 completed, 1 failed, 1 stopped_by_budget)``."""
_ENDINGS = ("stopped because", "OVER BUDGET", "NO TRIAL COMPLETED", "greentune: ")
_NOT_ENDINGS = ("greentune: warning:", "greentune: note:")
_FINAL_EXIT = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 130}


@dataclass(frozen=True)
class Submission:
    """A submitted study: the job's id, where it runs and what it runs."""

    job_id: str
    address: str
    entrypoint: str
    study_name: str
    notes: tuple[str, ...] = ()  # what the user should know about where the study's files go


@dataclass(frozen=True)
class JobProgress:
    """A study job's state, and its study's progress as its driver last printed it."""

    job_id: str
    status: str
    message: str
    done: int | None = None
    running: int | None = None
    failed: int | None = None
    kwh: float | None = None
    budget_kwh: float | None = None
    finish: str | None = None  # the driver's last ``stopped because``/``greentune:`` line

    def line(self) -> str:
        """One line for a terminal: the job, then the study."""
        parts = [f"job {self.job_id}: {self.status}" + (f" ({self.message})" if self.message else "")]
        if self.done is not None:
            share = f" ({100 * self.kwh / self.budget_kwh:.0f}%)" if self.kwh is not None and self.budget_kwh else ""
            parts.append(f"trials: {self.done} done, {self.running} running, {self.failed} failed | "
                         f"energy {self.kwh:.3g} of {self.budget_kwh:.3g} kWh{share}")
        else:
            parts.append("no trial booked yet")
        if self.finish:
            parts.append(self.finish)
        return " | ".join(parts)


def submit_study(study: str | os.PathLike[str], address: str | None = None,
                 working_dir: str | os.PathLike[str] = ".", resume: bool = False) -> Submission:
    """Validate ``study`` here, then run it on the cluster at ``address`` as a Ray job.

    The study file must lie inside ``working_dir``, which is shipped (without
    :data:`EXCLUDES`) and becomes the driver's current directory, so the study's
    relative paths and a local objective module work there as here. Nothing is
    submitted when the study is invalid: :class:`ConfigError`, as ``greentune run``
    would refuse it. Example::

        job = submit_study("study.yaml", address="http://127.0.0.1:8265")
        print(job_progress(job.job_id, job.address).line())
    """
    from tuner.config import load_config

    root = Path(working_dir).expanduser().resolve()
    path = Path(study).expanduser()
    path = (path if path.is_absolute() else Path.cwd() / path).resolve()
    if not root.is_dir():
        raise ConfigError(f"working directory '{root}' does not exist")
    if root != path.parent and root not in path.parents:
        raise ConfigError(f"study file '{path}' is outside the working directory '{root}' that is shipped; "
                          "run from the project's folder or pass --working-dir")
    with _importable_from(root):  # the objective is imported from the shipped folder on the cluster too
        cfg = load_config(path)
    relative = path.relative_to(root).as_posix()
    entrypoint = f"greentune run {shlex.quote(relative)}" + (" --resume" if resume else "")
    client = _client(address)
    job_id = client.submit_job(
        entrypoint=entrypoint,
        submission_id=f"greentune-{cfg.study_name}-{time.strftime('%Y%m%d-%H%M%S')}",
        runtime_env={"working_dir": str(root), "excludes": list(EXCLUDES)},
        metadata={"greentune.study": cfg.study_name},
    )
    notes = ()
    if cfg.output_dir is None or not Path(os.path.expanduser(cfg.output_dir)).is_absolute():
        notes = ("output_dir is relative: on the cluster it lies in the job's copy of the working directory, "
                 "which Ray deletes later; give an absolute output_dir on a volume, or resume from the copy in "
                 "the study's MLflow run (docs/clusters.md)",)
    return Submission(job_id, _address_of(client, address), entrypoint, cfg.study_name, notes)


def job_progress(job_id: str, address: str | None = None) -> JobProgress:
    """The job's state and its study's last progress line (raises ``ConfigError`` for an unknown job)."""
    client = _client(address)
    info = _job_info(client, job_id)
    return parse_progress(job_id, str(info.status), info.message or "", client.get_job_logs(job_id))


def parse_progress(job_id: str, status: str, message: str, logs: str) -> JobProgress:
    """A :class:`JobProgress` from the job's log: the last progress line, the last ending line."""
    found = list(PROGRESS.finditer(logs))
    finish = None
    for line in reversed(logs.splitlines()):
        text = line.strip()
        if text.startswith(_ENDINGS) and not text.startswith(_NOT_ENDINGS):
            finish = text[:300]
            break
    if finish is None and status == "FAILED":  # e.g. a traceback: its last line says what failed
        tail = [line.strip() for line in logs.splitlines() if line.strip() and " INFO " not in line]
        finish = tail[-1][:300] if tail else None
    # Ray's message repeats the log's tail when a job fails: its first line is enough
    message = "" if status in ("SUCCEEDED", "RUNNING") else (message.strip().splitlines() or [""])[0][:200]
    if not found:
        return JobProgress(job_id, status, message, finish=finish)
    last = found[-1]
    done, running, failed = int(last["done"]), int(last["running"]), int(last["failed"])
    kwh, budget = float(last["kwh"]), float(last["budget"])
    summary = [m for m in SUMMARY.finditer(logs) if m.start() > last.start()]
    if summary:  # the closing summary's energy: after the last trial, with the overhead
        kwh, budget = float(summary[-1]["kwh"]), float(summary[-1]["budget"])
    counts = [m for m in SUMMARY_TRIALS.finditer(logs) if m.start() > last.start()]
    if counts:  # and its final count of trials by status: none is running any more
        by_status = {name: int(n) for n, name in re.findall(r"(\d+) (\w+)", counts[-1]["counts"])}
        done, running, failed = by_status.get("completed", 0), 0, by_status.get("failed", 0)
    return JobProgress(job_id, status, message, done=done, running=running, failed=failed, kwh=kwh,
                       budget_kwh=budget, finish=finish)


def follow_job(job_id: str, address: str | None = None, out: Any = None) -> JobProgress:
    """Print the job's log as it grows, until the job ends; then its final progress."""
    import asyncio

    client = _client(address)
    _job_info(client, job_id)
    stream = out or sys.stdout

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            stream.write(chunk)
            stream.flush()

    asyncio.run(tail())
    return job_progress(job_id, address)


def exit_code(progress: JobProgress) -> int:
    """0 while running or succeeded; 1 failed; 130 stopped (as ``greentune run`` on Ctrl-C)."""
    return _FINAL_EXIT.get(progress.status, 0)


# ------------------------------------------------------------------ the command line

def add_commands(commands: Any) -> None:
    """``greentune submit`` and ``greentune status``, each with its handler."""
    submit = commands.add_parser(
        "submit", help="run a study on a Ray cluster as a Ray job (validated here first)",
        description="Check the study file here, ship the working directory (never .env files, greentune-runs/, "
                    "MLflow stores or .git) and run `greentune run STUDY` on the cluster's head as a Ray job.",
        epilog="exit codes: 0 submitted; 2 refused before anything was submitted (bad study file, no job server)",
    )
    submit.add_argument("study", help="path to the study YAML, inside the working directory")
    submit.add_argument("--address", help="the job server, e.g. http://HEAD_IP:8265 (default: RAY_ADDRESS)")
    submit.add_argument("--working-dir", default=".", help="the folder shipped to the cluster (default: .)")
    submit.add_argument("--resume", action="store_true", help="run `greentune run STUDY --resume` on the cluster")
    submit.set_defaults(handler=_submit)
    status = commands.add_parser(
        "status", help="a submitted study's job state, trials done and kWh of its budget",
        description="Read a study job's state and its study's progress (from the driver's progress lines).",
        epilog="exit codes: 0 running or succeeded; 1 the job failed; 2 no such job or no job server; "
               "130 the job was stopped",
    )
    status.add_argument("job_id", help="the id `greentune submit` printed")
    status.add_argument("--address", help="the job server, e.g. http://HEAD_IP:8265 (default: RAY_ADDRESS)")
    status.add_argument("--follow", action="store_true", help="print the job's log as it grows, until it ends")
    status.set_defaults(handler=_status)


def _submit(args: argparse.Namespace) -> int:
    from tuner.cli import one_line

    try:
        job = submit_study(args.study, args.address, args.working_dir, args.resume)
    except (ConfigError, JobServerUnavailable) as exc:
        print(f"greentune: {one_line(exc)}", file=sys.stderr)
        return 2
    print(f"submitted study '{job.study_name}' as job {job.job_id} ({job.entrypoint})")
    for note in job.notes:
        print(f"greentune: note: {note}", file=sys.stderr)
    print(f"follow it with:\n  greentune status {job.job_id} --address {job.address} --follow")
    return 0


def _status(args: argparse.Namespace) -> int:
    from tuner.cli import one_line

    try:
        progress = (follow_job if args.follow else job_progress)(args.job_id, args.address)
    except (ConfigError, JobServerUnavailable) as exc:
        print(f"greentune: {one_line(exc)}", file=sys.stderr)
        return 2
    print(progress.line())
    return exit_code(progress)


# ------------------------------------------------------------------ helpers

def _client(address: str | None) -> JobSubmissionClient:
    from ray.job_submission import JobSubmissionClient

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # noqa: BLE001 - a down or missing job server: one line, nothing submitted
        where = address or os.environ.get("RAY_ADDRESS") or "a local cluster"
        raise JobServerUnavailable(f"no Ray job server at {where}: {str(exc).splitlines()[0][:300] if str(exc) else exc}; "
                              "start one with `ray start --head --dashboard-host 0.0.0.0` (needs ray[default]) "
                              "and pass --address http://HEAD_IP:8265") from None


def _job_info(client: JobSubmissionClient, job_id: str) -> Any:
    try:
        return client.get_job_info(job_id)
    except RuntimeError as exc:
        if "does not exist" in str(exc) or "404" in str(exc):
            raise ConfigError(f"no job '{job_id}' on this cluster (list them with `ray job list`)") from None
        raise


def _address_of(client: JobSubmissionClient, address: str | None) -> str:
    return str(getattr(client, "_address", None) or address or os.environ.get("RAY_ADDRESS", ""))


@contextmanager
def _importable_from(root: Path) -> Iterator[None]:
    """Import the objective from ``root``, as the job's driver will (its cwd is the shipped folder)."""
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))


__all__ = ["EXCLUDES", "JobProgress", "Submission", "follow_job", "job_progress", "parse_progress", "submit_study"]
