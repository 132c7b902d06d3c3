"""Atomic output files: a full disk leaves the previous version intact and says so.

Every study output (``trials.csv``, ``study.json``) is written to a temporary file in
the same directory, flushed to disk, then renamed over the old one; a failed write
removes its temporary file (which would otherwise hold on to the last free blocks) and
raises :class:`OutputWriteError` naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from tuner.errors import OutputWriteError


def atomic_write(path: Path, write: Callable[[IO[str]], None]) -> None:
    """Write ``path`` through ``write(handle)`` all at once, or not at all."""
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if not isinstance(exc, OSError) or isinstance(exc, OutputWriteError):
            raise
        keep = "the previous version is intact" if path.exists() else "it was not created"
        raise OutputWriteError(
            exc.errno, f"could not write {path}: {exc.strerror or exc} ({keep})"
        ) from exc
