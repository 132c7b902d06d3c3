"""A trial's child processes: kept in sight of the meter, and ended with the trial.

An objective may start processes (data loader workers, a ``multiprocessing`` pool, a
``subprocess``, a daemon that double-forks). While they are descendants of the trial
process, the meter's CPU-time clock and DRAM sampler see them (``psutil`` children,
recursive). Two things went wrong before:

- a forked grandchild whose parent exited was re-parented to init: no longer a
  descendant, so unmetered, and it outlived the study;
- nothing ended the objective's children when its trial ended.

So the trial process becomes a *child subreaper* (Linux ``prctl``): orphaned
descendants are re-parented to it instead of init, stay descendants, and stay metered.
When the trial ends, :func:`end_descendants` terminates every descendant started since
the trial began (SIGTERM, then SIGKILL after a grace period) and reaps them, so their
CPU time lands in the trial process's ``children_*`` times, which the window's final
reading includes. What this cannot do: end them when the trial process itself dies
abruptly (``os._exit``, SIGKILL, the OOM killer) - they then live on, re-parented to
Ray's worker's parent - nor see a process that leaves via ``setsid`` and a parent that
is not a descendant (a systemd unit, a container runtime).

Standard library and psutil only: this is imported in every trial process.
"""

from __future__ import annotations

import ctypes
import logging
import sys

import psutil

logger = logging.getLogger("tuner")

_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
_subreaper: bool | None = None


def adopt_orphans() -> bool:
    """Make this process the subreaper of its descendants (Linux 3.4+), once per process.

    Returns whether it is one. Elsewhere (macOS, Windows) orphans go to init as before.
    """
    global _subreaper
    if _subreaper is None:
        _subreaper = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
            except (OSError, AttributeError):
                _subreaper = False
    return _subreaper


def end_descendants(started_at: float, grace_s: float = 2.0) -> list[int]:
    """Terminate and reap every descendant of this process started at or after ``started_at``
    (unix time); return their pids.

    Only processes started since the trial began are touched: a reused Ray worker may hold
    processes of its own. SIGTERM first, SIGKILL for those still alive after ``grace_s``.
    """
    try:
        found = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    procs = []
    for proc in found:
        try:
            if proc.create_time() >= started_at - 0.05:  # create_time has 10 ms ticks
                procs.append(proc)
        except psutil.Error:
            continue
    if not procs:
        return []
    _, alive = _signal_and_wait(procs, "terminate", grace_s)
    _, stuck = _signal_and_wait(alive, "kill", grace_s)
    pids = [p.pid for p in procs]
    logger.info("the trial left %d process(es) running (%s); ended them", len(pids), ", ".join(map(str, pids)))
    if stuck:
        logger.warning("processes %s of the trial did not end after SIGKILL", [p.pid for p in stuck])
    return pids


def _signal_and_wait(procs: list[psutil.Process], how: str, grace_s: float) -> tuple[list, list]:
    """``terminate`` or ``kill`` each process, then wait up to ``grace_s``: ``(gone, alive)``."""
    for proc in procs:
        try:
            getattr(proc, how)()
        except psutil.Error:
            pass
    return psutil.wait_procs(procs, timeout=grace_s)


__all__ = ["adopt_orphans", "end_descendants"]
