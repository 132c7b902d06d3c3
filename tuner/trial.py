"""The trial wrapper: runs one objective call inside an energy window, in a Ray trial.

The objective runs in a daemon thread so that this (Ray's) thread can report the live
energy every ``report_interval_s`` even when the objective never calls
:func:`tuner.report`; the driver's budget depends on those heartbeats. Every trial ends
with one final report carrying ``greentune_status`` (``completed`` or ``failed``), the
metrics and the energy, so a failing objective loses none of the energy it spent.

This module must stay light: it is imported in every trial process, and neither Ax
nor torch may be imported there unless the objective itself does.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pickle
import queue
import shutil
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tuner.children import adopt_orphans, end_descendants
from tuner.config import EnergySettings
from tuner.energy import Measurement, make_meter
from tuner.errors import TrialTimeout
from tuner.redact import install_stream_redaction, redact
from tuner.study.record import (
    ENERGY_METRIC,
    REPORTED_SOURCE,
    UNDERREPORTED_SOURCE,
    final_result,
    is_reserved_result_key,
    running_result,
)
from tuner.study.spool import driver_alive, write_last_word

_WINDOW = "trial"
_STATE_FILE = "greentune_state.pkl"  # inside a Ray Tune checkpoint directory

REPORTED_ENERGY_FLOOR = 0.1
"""A reported ``energy_kwh`` below this share of the energy measured in the trial's own
window is not believed: the measurement is booked instead (``energy_source`` =
``measured-over-reported``) and a warning names both figures. No meter error comes near
a factor of 10 (the CPU-time estimate's band is +/-50 %), so only a report that would
let the trial slip past the budget is refused; a replayed trace reporting more than it
measured is untouched."""
_STOP_GRACE_S = 2.0  # a timed-out objective's next report() ends it; else its process is ended


@dataclass(frozen=True)
class TrialSettings:
    """What a trial needs from the study config; small, so Ray ships it cheaply."""

    objective: Callable[..., Any] | str
    metric: str
    energy: EnergySettings
    report_interval_s: float
    timeout_s: float | None = None  # trial_timeout_s
    spool_dir: str | None = None  # the study's inflight/ folder (tuner.study.spool)
    driver_host: str | None = None  # the driver's machine and process, watched by the trial
    driver_pid: int | None = None


class _Session:
    """The running trial's channel from :func:`report` to the wrapper thread."""

    def __init__(self, restored: Any = None) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.restored = restored
        self.stopped = False  # Ray stopped the trial: the objective ends at its next report()
        self.ended = threading.Event()  # the wrapper is done with the objective: no more last words
        self.last_word: Callable[[Measurement], dict[str, Any]] | None = None  # a heartbeat of the energy given


class _TrialStopped(BaseException):
    """Raised in the objective by :func:`report` once Ray has stopped its trial.

    A ``BaseException`` (like ``SystemExit``), so that an objective's ``except Exception``
    does not keep a stopped trial running.
    """


_current: _Session | None = None
_objective_thread = threading.local()  # the session of the trial whose objective runs here
_last_objective: threading.Thread | None = None  # the objective thread of this process's last trial


def report(checkpoint: Any = None, **metrics: float) -> None:
    """Report intermediate metrics (for example once per epoch) from inside an objective.

    ``checkpoint`` is any picklable state (model and optimiser state dicts, the epoch)
    from which the objective can go on: with it, the carbon policy ``pause-resume`` may
    pause the trial while the grid is dirty and restart it later from that state, which
    :func:`get_checkpoint` returns. Outside a greentune trial this does nothing, so an
    objective can be called directly in a notebook or a unit test.
    """
    session = getattr(_objective_thread, "session", None) or _current
    if session is None:
        return
    if session.stopped:
        raise _TrialStopped("the trial was stopped")
    if checkpoint is not None:  # pickled now: the objective may change the object later
        session.events.put(("checkpoint", pickle.dumps(checkpoint)))
    values = _as_floats(metrics)
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:  # fail the trial now: a NaN must not reach the stopper, Ax or the front
        raise ValueError(f"tuner.report: metric '{bad[0]}' is not finite ({values[bad[0]]})")
    reserved = _reserved(values)
    if reserved:  # fail now, not after the energy is spent: it would overwrite the books
        raise ValueError(f"tuner.report: {_reserved_message(reserved)}")
    session.events.put(("report", (values, time.time())))  # when, for MLflow's metric history


def get_checkpoint() -> Any:
    """The state this trial last passed to ``report(checkpoint=...)`` before it was paused.

    ``None`` on a trial's first run, and outside a greentune trial.
    """
    session = _current
    return None if session is None else session.restored


def run_trial(params: dict[str, Any], settings: TrialSettings) -> None:
    """Ray Tune function trainable: objective + energy window + heartbeats.

    Ray may run the next trial in this same process (``reuse_trial_processes``). So that
    each trial's window holds its own energy only, a trial never ends while its objective
    still runs: a stopped trial's objective ends at its next :func:`report` call, and
    until then this function waits (Ray gives up on reusing a process whose trial does
    not end soon, and starts a new one).

    With ``settings.timeout_s`` (``trial_timeout_s``) a run of the trial that lasts longer
    ends with a ``failed`` final record holding the energy until then; an objective that
    does not stop at its next :func:`report` gets its process ended (:class:`TrialTimeout`).
    The processes the objective started end with the trial (:mod:`tuner.children`).
    """
    from ray import tune

    global _current, _last_objective
    trial_id = tune.get_context().get_trial_id() or "unknown"
    if _last_objective is not None and _last_objective.is_alive():
        raise RuntimeError("an earlier trial's objective still runs in this process; "
                           "its energy would be metered as this trial's")
    install_stream_redaction()  # what the objective prints or logs reaches the driver's console
    adopt_orphans()  # a daemonised grandchild stays a descendant: metered, and ended with the trial
    gpu_ids, gpu_shared = _assigned_gpus()
    meter = make_meter(settings.energy, gpu_ids=gpu_ids, gpu_shared=gpu_shared)
    meter.hardware.update(_ray_node_tags())  # several nodes may share one hostname
    restored, epochs = _restored_state()
    session = _Session(restored)
    _current = session
    # One id per process run of this trial: after a pause the meter starts again from
    # zero, and the ledger adds the runs up by this id.
    segment = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
    checkpointed = restored is not None
    started_at = time.time()
    meter.begin_window(_WINDOW)
    # from the window's start: a trial that timed out has metered at least timeout_s
    deadline = None if settings.timeout_s is None else time.monotonic() + settings.timeout_s
    worker = threading.Thread(
        target=_call_objective, args=(settings.objective, params, session, gpu_ids), daemon=True
    )
    worker.start()
    _last_objective = worker
    latest: dict[str, float] = {}
    unsent: list[tuple[int, dict[str, float], float]] = []  # (report number, metrics, time) not yet sent
    state: bytes | None = None  # the objective's newest checkpoint, not yet given to Ray
    session.last_word = lambda energy: {
        **running_result(latest, energy.as_record(), epochs, unsent, segment, checkpointed), "config": params}
    _watch_driver(settings, trial_id, meter, session, started_at)
    try:
        while True:
            wait = settings.report_interval_s
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            kind, payload = _next_event(session.events, wait)
            # A burst of report() calls goes to Ray as one result (each costs a driver round
            # trip); every call still travels in ``greentune_reports`` for the metric history,
            # as JSON: Ray's TensorBoard logger warns on a list-valued result.
            while kind in ("report", "checkpoint"):
                if kind == "checkpoint":
                    state = payload
                else:
                    values, reported_at = payload
                    latest.update(values)
                    epochs += 1
                    unsent.append((epochs, values, reported_at))
                kind, payload = _next_event(session.events, 0.0)
            if kind in ("returned", "raised"):
                break
            if deadline is not None and time.monotonic() >= deadline:
                kind, payload = "timeout", settings.timeout_s
                session.stopped = True  # the objective's next report() ends it
                break
            live = meter.read_window(_WINDOW)
            checkpointed = checkpointed or state is not None
            heartbeat = running_result(latest, live.as_record(), epochs, unsent, segment, checkpointed)
            write_last_word(settings.spool_dir, trial_id, {**heartbeat, "config": params})
            _report_with_checkpoint(heartbeat, state, epochs)
            state, unsent = None, []
    except SystemExit:  # Ray stopped the trial: its report() raised in this thread
        session.stopped = True
        worker.join()  # the objective raises at its next report(); a reused process stays exact
        end_descendants(started_at)
        raise
    except BaseException:
        session.stopped = True  # the trial failed: Ray ends its process
        end_descendants(started_at)
        raise
    finally:
        session.ended.set()
        _current = None
    # the objective's processes end with it; reaped, their CPU time joins this window
    end_descendants(started_at)
    measured = meter.end_window(_WINDOW)
    meter.close()
    final = _final_record(kind, payload, latest, epochs, measured, settings.metric, unsent, segment)
    write_last_word(settings.spool_dir, trial_id, {**final, "config": params})  # kept if the driver dies first
    tune.report(final)
    if kind == "timeout":
        worker.join(_STOP_GRACE_S)
        if worker.is_alive():  # asleep or in native code: only the end of its process stops it
            raise TrialTimeout(f"the objective still ran {settings.timeout_s:g} s after it started; "
                               "its trial is booked failed and its process ended")


def _watch_driver(settings: TrialSettings, trial_id: str, meter: Any, session: _Session, started_at: float) -> None:
    """End this trial if its driver dies (:mod:`tuner.study.spool`), from a thread of its own:
    the wrapper's thread blocks in ``tune.report`` once nobody takes its results."""
    if settings.driver_pid is None or settings.driver_host != socket.gethostname():
        return  # no driver named, or on another machine: Ray ends the trial

    def watch() -> None:
        while not session.ended.wait(min(0.5, settings.report_interval_s)):
            if driver_alive(settings.driver_host, settings.driver_pid):
                continue
            session.stopped = True
            end_descendants(started_at)  # their CPU time joins the window
            if session.last_word is not None and not session.ended.is_set():
                write_last_word(settings.spool_dir, trial_id, session.last_word(meter.read_window(_WINDOW)))
            os._exit(0)  # nobody will book more; the objective may be in native code

    threading.Thread(target=watch, name="greentune-driver-watch", daemon=True).start()


def _report_with_checkpoint(record: dict[str, Any], state: bytes | None, epochs: int) -> None:
    """``tune.report``, with the objective's state as a Ray Tune checkpoint when there is one."""
    from ray import tune

    if state is None:
        tune.report(record)
        return
    # Ray logs every persisted checkpoint at INFO: one line per epoch in the study's output.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    directory = tempfile.mkdtemp(prefix="greentune-ckpt-")
    try:
        with open(os.path.join(directory, _STATE_FILE), "wb") as handle:
            pickle.dump({"state": state, "epochs": epochs}, handle)
        # Ray copies the directory to the trial's storage before report() returns.
        tune.report(record, checkpoint=tune.Checkpoint.from_directory(directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _restored_state() -> tuple[Any, int]:
    """The objective's state and report count from Ray's checkpoint, when resumed after a pause."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None, 0
    with checkpoint.as_directory() as directory:
        with open(os.path.join(directory, _STATE_FILE), "rb") as handle:
            saved = pickle.load(handle)
    return pickle.loads(saved["state"]), int(saved["epochs"])


def _next_event(events: queue.Queue[tuple[str, Any]], timeout: float) -> tuple[str, Any]:
    """The next event from the objective, or a heartbeat when none comes in ``timeout``."""
    try:
        return events.get(timeout=timeout) if timeout > 0 else events.get_nowait()
    except queue.Empty:
        return "heartbeat", None


def _assigned_gpus() -> tuple[list[str] | None, bool]:
    """The GPUs Ray gave this trial, and whether it holds only a fraction of one.

    Outside a Ray worker this is ``(None, False)``: ``CUDA_VISIBLE_DEVICES`` decides.
    """
    try:
        import ray

        if not ray.is_initialized():
            return None, False
        share = ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)
        return [str(g) for g in ray.get_gpu_ids()], 0 < share < 1
    except Exception:  # noqa: BLE001 - no Ray context: fall back to CUDA_VISIBLE_DEVICES
        return None, False


def _ray_node_tags() -> dict[str, str]:
    """``hw_node_id``, ``hw_node_ip`` and ``hw_pid``: the Ray node and process this trial
    (and its meter) runs in."""
    try:
        import ray

        if not ray.is_initialized():
            return {}
        return {"hw_node_id": ray.get_runtime_context().get_node_id(),
                "hw_node_ip": ray.util.get_node_ip_address(),
                "hw_pid": str(os.getpid())}  # trials that shared a process (reuse_trial_processes)
    except Exception:  # noqa: BLE001 - outside a Ray worker there is no node to name
        return {}


def _call_objective(
    objective: Callable[..., Any] | str, params: dict[str, Any], session: _Session, gpu_ids: list[str] | None
) -> None:
    _objective_thread.session = session  # report() finds its own trial, even after a newer one began
    try:
        from tuner.config import POWER_LIMIT_PARAM, resolve_objective
        from tuner.energy.power_limit import gpu_power_limit

        # The limit is set before the objective starts and restored when it ends, even
        # when it raises; the objective still sees the value in its params.
        with gpu_power_limit(params.get(POWER_LIMIT_PARAM), gpu_ids):
            result = resolve_objective(objective)(dict(params))
    except BaseException as exc:  # noqa: BLE001 - any failure is this trial's result
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
        session.events.put(("raised", f"{type(exc).__name__}: {exc}\n{detail}"))
    else:
        session.events.put(("returned", result))


def _final_record(
    kind: str, payload: Any, latest: dict[str, float], epochs: int, measured: Measurement, metric: str,
    unsent: list[tuple[int, dict[str, float], float]] | None = None, segment: str | None = None,
) -> dict[str, Any]:
    """The trial's last Ray result, from how the objective ended (``returned`` or ``raised``)."""
    metrics, energy, error = _outcome(kind, payload, latest, measured, metric)
    return final_result(metrics, energy.as_record(), epochs, unsent or [], segment or "", socket.gethostname(), error)


def _outcome(
    kind: str, payload: Any, latest: dict[str, float], measured: Measurement, metric: str
) -> tuple[dict[str, float], Measurement, str | None]:
    """The trial's metrics, its energy (the objective's own ``energy_kwh`` if it returned a
    believable one, see :data:`REPORTED_ENERGY_FLOOR`) and its error (``None`` if it completed)."""
    try:
        if kind == "raised":
            raise _TrialFailure(f"objective raised {payload}")
        if kind == "timeout":
            raise _TrialFailure(f"timeout: the trial ran longer than trial_timeout_s = {payload:g} s and was "
                                "stopped; its energy until then is counted")
        metrics = _check_metrics(payload, latest, metric)
    except _TrialFailure as exc:
        latest = {k: v for k, v in latest.items() if k != ENERGY_METRIC}
        return latest, measured, redact(str(exc))[:4000]  # this process's secrets
    if ENERGY_METRIC not in metrics:
        return metrics, measured, None
    energy = metrics.pop(ENERGY_METRIC)
    if energy < REPORTED_ENERGY_FLOOR * measured.energy_kwh:
        logging.getLogger("tuner").warning(
            "the objective reported %.3g kWh, below %g of the %.3g kWh measured for its trial; the measured "
            "energy is booked", energy, REPORTED_ENERGY_FLOOR, measured.energy_kwh)
        return {**metrics, "energy_reported_kwh": energy}, dataclasses.replace(measured, source=UNDERREPORTED_SOURCE), None
    reported = Measurement(
        energy_kwh=energy,
        duration_s=measured.duration_s,
        source=REPORTED_SOURCE,
        relative_uncertainty=math.nan,  # unknown: the objective's own meter
        cpu_time_s=measured.cpu_time_s,
        hardware=measured.hardware,
    )
    return metrics, reported, None


class _TrialFailure(Exception):
    pass


def _check_metrics(returned: Any, latest: dict[str, float], metric: str) -> dict[str, float]:
    if returned is None:
        returned = {}
    if not isinstance(returned, Mapping):
        raise _TrialFailure(
            f"objective must return a dict of metrics such as {{'{metric}': 0.9}}, got "
            f"{type(returned).__name__} {_short(returned)}"
        )
    try:
        metrics = {**latest, **_as_floats(returned)}
    except (TypeError, ValueError) as exc:
        raise _TrialFailure(str(exc)) from None
    if metric not in metrics:
        raise _TrialFailure(
            f"objective did not return metric '{metric}' (it returned: {sorted(returned) or 'nothing'})"
        )
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise _TrialFailure(f"metric '{bad[0]}' is not finite ({metrics[bad[0]]})")
    if ENERGY_METRIC in metrics and metrics[ENERGY_METRIC] < 0:
        raise _TrialFailure(f"metric '{ENERGY_METRIC}' is negative ({metrics[ENERGY_METRIC]})")
    reserved = _reserved(metrics)
    if reserved:
        raise _TrialFailure(f"objective returned {_reserved_message(reserved)}")
    return metrics


def _reserved(metrics: Mapping[str, float]) -> list[str]:
    """Keys greentune books itself (all but ``energy_kwh``, which an objective may report)."""
    return sorted(k for k in metrics if k != ENERGY_METRIC and is_reserved_result_key(k))


def _reserved_message(keys: list[str]) -> str:
    return (f"reserved key(s) {keys}: greentune measures and books these itself (energy_kwh is the one an "
            "objective may report); rename them")


def _as_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
            raise TypeError(f"metric '{key}' must be a number, got {type(value).__name__} {_short(value)}")
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError) as exc:  # e.g. a many-element array
            raise TypeError(f"metric '{key}' must be a number, got {type(value).__name__}: {exc}") from None
    return out


def _short(value: Any) -> str:
    """``repr(value)`` cut to a length fit for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
