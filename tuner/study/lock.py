"""One live driver per study: an exclusive lock on ``study.lock`` in its output directory.

Two drivers on one study (a ``--resume`` while the first still runs, two ``greentune
run`` on one directory) each book trials the other does not see, and the books stop
adding up. The lock is an ``flock`` on an open file: the kernel drops it when its
process ends, however it ends, so a driver killed by SIGKILL or a power cut leaves no
stale lock to clear by hand. The file's text (pid, host, start time) only serves the
error message. ``flock`` is not reliable on every network file system; there, keep one
driver per study yourself.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from tuner.config import ConfigError

LOCK_FILE = "study.lock"


class StudyLock:
    """Held while a study's driver runs; :meth:`release` or the process's end frees it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, directory: Path) -> StudyLock:
        """Take the study's lock, or refuse with who holds it."""
        path = directory / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ConfigError(
                f"the study in '{directory}' is being run by another driver ({holder}); wait for it to end, "
                "or stop it (Ctrl-C) and then resume with `--resume`"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode())
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(data["since"])))
        return f"pid {data['pid']} on {data['host']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
