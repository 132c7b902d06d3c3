"""Ctrl-C and SIGTERM end a study cleanly: resumable, with every trial booked.

Ray Tune's own Ctrl-C handler ends the run as if it had finished, so the study would be
closed for good and ``--resume`` would refuse it. Instead, the first SIGINT or SIGTERM
tells the ledger: no trial starts, the running ones are stopped and booked as
``interrupted`` (their energy counted; a resumed study runs others in their place),
and the study ends with ``finish_reason`` "interrupted by SIGINT", its report written and
its MLflow parent run ``KILLED``, ready for ``--resume``. A second signal quits at once,
as a second Ctrl-C does in Ray Tune; what was booked until then is on disk.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from tuner.envvars import scoped_env
from tuner.study.ledger import EnergyLedger

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def ending_on_signals(ledger: EnergyLedger) -> Iterator[None]:
    """Within the block, the first SIGINT/SIGTERM interrupts the study through ``ledger``.

    Handlers can only be set from the main thread; elsewhere (a study run from a worker
    thread) the signals keep their usual meaning.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}

    def interrupt(number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        for sig, handler in previous.items():  # a second signal acts as it would have
            signal.signal(sig, handler)
        ledger.interrupt(name)
        print(f"\n[greentune] {name}: stopping the running trials and saving the study; it can be resumed "
              "with --resume (send the signal again to quit at once)", file=sys.stderr, flush=True)

    for sig in _SIGNALS:
        signal.signal(sig, interrupt)
    try:
        with scoped_env({"TUNE_DISABLE_SIGINT_HANDLER": "1"}):  # Ray Tune's would end the study as finished
            yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
