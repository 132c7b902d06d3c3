"""A trial's last word on disk, for when its driver dies.

The driver books every heartbeat in ``ledger.json``; but a trial still running when its
driver is killed (SIGKILL, a lost head node) has nobody left to report to, and its
result and the energy since its last heartbeat used to be lost. So each trial that can
reach the study's output directory (on the driver's machine, or through a shared volume)
also keeps its latest result there, ``inflight/<trial id>.json``, replaced at every
heartbeat and at its end. A resumed driver books these over what ``ledger.json`` holds:
a trial that finished after its driver died counts as completed, with its result; one
that was still running is closed as interrupted with the energy it spent until it
stopped.

A trial on the driver's machine also watches the driver's process: once it is gone, the
trial ends its objective (and the objective's processes), writes its energy, and ends its
own process rather than spend energy nobody will book. A trial on another node is ended
by Ray when it notices the driver has gone.

This module is imported in every trial process: standard library and :mod:`tuner.redact` only.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from tuner.redact import redact_obj  # secrets masked, as in ledger.json

SPOOL_DIR = "inflight"


def spool_file(directory: str | os.PathLike[str], trial_id: str) -> Path:
    return Path(directory) / f"{trial_id}.json"


def write_last_word(directory: str | None, trial_id: str, result: dict[str, Any]) -> None:
    """Replace the trial's spooled result. Best effort: a trial never fails for it.

    No fsync: this guards against the driver's death, not the machine's, and a trial
    writes one every heartbeat.
    """
    if not directory or not os.path.isdir(directory):
        return  # another node, without the study's volume: Ray and ledger.json cover it
    path = spool_file(directory, trial_id)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"at": time.time(), "result": redact_obj(result)}, default=str))
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def read_last_words(directory: Path) -> dict[str, tuple[float, dict[str, Any]]]:
    """Every spooled result by trial id, as ``(written at, result)``; unreadable files are skipped."""
    words: dict[str, tuple[float, dict[str, Any]]] = {}
    if not directory.is_dir():
        return words
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            words[path.stem] = (float(data["at"]), dict(data["result"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return words


def clear(directory: Path) -> None:
    """Drop the spool once the ledger on disk holds what it said."""
    shutil.rmtree(directory, ignore_errors=True)


def driver_alive(host: str | None, pid: int | None) -> bool:
    """Whether the study's driver process still runs; ``True`` when this cannot be told
    (another machine, or no driver named)."""
    if host is None or pid is None or host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
