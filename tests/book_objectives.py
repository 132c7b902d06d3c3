"""Objectives that try to corrupt a study's books, for tests/test_books.py (no torch, no Ax)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import tuner
from tests.objectives_for_tests import _burn

# Burns CPU forever; writes its pid to argv[1] + ".pid", and touches argv[1] once it has
# used argv[2] CPU seconds.
BURN = """
import os, sys, time
marker, seconds = sys.argv[1], float(sys.argv[2])
open(marker + ".pid", "w").write(str(os.getpid()))
done = False
while True:
    sum(i * i for i in range(2000))
    if not done and time.process_time() >= seconds:
        open(marker, "w").close()
        done = True
"""

# A classic daemon: fork, setsid, fork again and let the middle process exit, so the
# grandchild is an orphan (before greentune adopted them, re-parented to init).
DAEMON = """
import os, sys
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
exec(compile(sys.argv[3], "burn", "exec"))
"""

CHILD_CPU_S = 1.0


def _wait_for(path: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def books(params: dict) -> dict:
    """One way to corrupt the books per ``kind``; ``good`` is an honest trial."""
    kind = params["kind"]
    if kind == "good":
        _burn(0.2)
        return {"accuracy": 0.9}
    if kind == "co2":  # made the study's CO2 -1000 g
        _burn(0.2)
        return {"accuracy": 0.8, "co2_kg": -1.0}
    if kind == "zero_energy":  # bypassed the budget
        _burn(0.5)
        return {"accuracy": 0.7, "energy_kwh": 0.0}
    if kind == "exit":  # os._exit: no final report at all
        for _ in range(4):
            _burn(0.4)
            tuner.report(accuracy=0.1)
        time.sleep(1.0)  # the last heartbeat reaches the driver
        os._exit(0)
    if kind == "children":  # a child and a daemonised grandchild that burn CPU and would outlive it
        out = Path(params["pid_dir"])
        child = subprocess.Popen([sys.executable, "-c", BURN, str(out / "child"), str(CHILD_CPU_S)])
        middle = subprocess.Popen([sys.executable, "-c", DAEMON, str(out / "grandchild"), str(CHILD_CPU_S), BURN])
        middle.wait()  # the daemon's parent is gone: the grandchild is an orphan now
        _wait_for(out / "child")
        _wait_for(out / "grandchild")
        assert child.poll() is None  # still burning when the objective returns
        return {"accuracy": 0.6}
    raise ValueError(kind)


def overstays(params: dict) -> dict:
    """Runs past any timeout: asleep (no CPU, never calls report) or burning CPU with reports."""
    Path(params["pid_dir"], params["kind"] + ".pid").write_text(str(os.getpid()))
    if params["kind"] == "sleep":
        time.sleep(600)
    elif params["kind"] == "burn":
        while True:
            _burn(0.2)
            tuner.report(accuracy=0.5)
    return {"accuracy": 1.0}


def leaky(params: dict) -> dict:
    """Leaks the environment's ``DB_PASSWORD`` every way an objective can: a print, a log line
    through a ``tuner.*`` logger, and (``fail``) an error that quotes it."""
    import logging

    secret = os.environ.get("DB_PASSWORD", "")
    print(f"printed DB_PASSWORD={secret}", flush=True)
    logging.getLogger("tuner.my_objective").warning("logged DB_PASSWORD=%s", secret)
    _burn(0.1)
    if params["fail"]:
        raise RuntimeError(f"could not log in to the database with DB_PASSWORD={secret}")
    return {"accuracy": 0.5}
