"""Objectives that break on purpose, for tests/test_faults.py (no torch, no Ax)."""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

import tuner
from tests.objectives_for_tests import _burn

KILL_REPORTS = 3


def killed_after_reports(params: dict) -> dict:
    """Reports ``KILL_REPORTS`` times; for ``x`` >= 0.9 its process then dies by SIGKILL.

    It waits a moment after its last report so that the heartbeat carrying it reaches
    the driver: what the driver last heard is what the ledger can count.
    """
    for step in range(KILL_REPORTS):
        _burn(0.2)
        tuner.report(accuracy=float(params["x"]) * (step + 1) / KILL_REPORTS)
    if params["x"] >= 0.9:
        time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGKILL)
    return {"accuracy": float(params["x"])}


def ticketed(params: dict) -> dict:
    """Takes the next ticket in ``params['control']`` and waits there for ``release-N``.

    Lets a test decide exactly when each trial ends (say, around stopping a server).
    """
    control = Path(params["control"])
    number = 0
    while True:
        try:
            os.close(os.open(control / f"ticket-{number}", os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            number += 1
    deadline = time.monotonic() + 300
    while not (control / f"release-{number}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    _burn(0.05)
    return {"accuracy": float(params["x"]), "ticket": float(number)}


def _take_ticket(control: Path) -> int:
    number = 0
    while True:
        try:
            os.close(os.open(control / f"ticket-{number}", os.O_CREAT | os.O_EXCL))
            return number
        except FileExistsError:
            number += 1


def fills_disk(params: dict) -> dict:
    """The second trial to start fills the file system of ``params['fill']`` to the last byte.

    Tickets live in ``params['control']``, on another file system.
    """
    _burn(0.1)
    if _take_ticket(Path(params["control"])) == 1:
        with open(params["fill"], "wb", buffering=0) as handle:
            chunk = b"\0" * 4096
            try:
                while True:
                    handle.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
            try:  # the last partial block too
                while True:
                    handle.write(b"\0")
            except OSError:
                pass
    return {"accuracy": float(params["x"])}


def on_a_node(params: dict) -> dict:
    """Takes a ticket in ``params['control']`` naming its node (``GREENTUNE_TEST_NODE``), then
    burns CPU and reports every 0.2 s until ``release-N`` exists; writes ``reported-N`` after
    its second report, so a test knows the driver has heard its energy."""
    control = Path(params["control"])
    number = 0
    while True:
        try:
            fd = os.open(control / f"ticket-{number}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, os.environ.get("GREENTUNE_TEST_NODE", "head").encode())
            os.close(fd)
            break
        except FileExistsError:
            number += 1
    reports = 0
    deadline = time.monotonic() + 300
    while not (control / f"release-{number}").exists() and time.monotonic() < deadline:
        _burn(0.2)
        reports += 1
        tuner.report(accuracy=float(params["x"]))
        if reports == 2:
            (control / f"reported-{number}").touch()
    return {"accuracy": float(params["x"])}
