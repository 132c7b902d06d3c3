"""Cheap objectives with known behaviour, for end-to-end tests (no torch, no Ax)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import tuner


def quadratic(params: dict) -> dict:
    """Accuracy rises with x; the CPU burnt (so energy) rises with x too."""
    x = float(params["x"])
    _burn(0.05 + 0.3 * x)
    return {"accuracy": 1.0 - (1.0 - x) ** 2}


def burner(params: dict) -> dict:
    """Busy for ``seconds`` CPU seconds, reporting every half second: made to be cut by a budget."""
    seconds = float(params.get("seconds", 30.0))
    start = time.process_time()
    step = 0
    while time.process_time() - start < seconds:
        _burn(0.5)
        step += 1
        tuner.report(accuracy=min(1.0, step / 100))
    return {"accuracy": 1.0}


def failing(params: dict) -> dict:
    _burn(0.2)
    if params["x"] > 0.5:
        raise RuntimeError("deliberate failure for x > 0.5")
    return {"accuracy": params["x"]}


def always_raises(params: dict) -> dict:
    """Broken for every configuration, as an objective fed a wrong type is."""
    raise TypeError(f"unsupported operand type(s) for *: 'dict' and 'float' (x={params['x']:.3f})")


def missing_metric(params: dict) -> dict:
    return {"acc": 0.5}


def not_finite(params: dict) -> dict:
    return {"accuracy": math.nan}


def reports_energy(params: dict) -> dict:
    """A replayed trace: the objective knows its energy and says so."""
    return {"accuracy": params["x"], "energy_kwh": 0.001 * (1 + params["x"])}


def heavy_modules(params: dict) -> dict:
    """Which heavy libraries a trial process has imported, as 0/1 metrics."""
    return {
        "accuracy": params["x"],
        "ax_imported": float("ax" in sys.modules),
        "torch_imported": float("torch" in sys.modules),
        "mlflow_imported": float("mlflow" in sys.modules),
    }


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    total = 0
    while time.process_time() < end:
        total += sum(i * i for i in range(2000))


def node_marker(params: dict) -> dict:
    """Which node ran this trial, as the node's own environment says (``GREENTUNE_TEST_NODE``)."""
    import os

    _burn(0.4)
    return {"accuracy": float(params["x"]), "node_marker": float(os.environ.get("GREENTUNE_TEST_NODE", "0"))}


def gpu_probe(params: dict) -> dict:
    """Which fake GPU this trial was given (``CUDA_VISIBLE_DEVICES``), and its power limit now.

    Runs on a node whose ``pynvml`` is the fake of ``tests/fakes/nvml_node``.
    """
    import os

    import pynvml

    from tests.fakes.fake_pynvml import NODE_GPUS

    uuids = [uuid for uuid, _ in NODE_GPUS]
    visible = os.environ["CUDA_VISIBLE_DEVICES"].split(",")
    pynvml.nvmlInit()
    try:
        limit_w = pynvml.nvmlDeviceGetPowerManagementLimit(pynvml.nvmlDeviceGetHandleByUUID(visible[0])) / 1000
    finally:
        pynvml.nvmlShutdown()
    _burn(0.3)
    return {"accuracy": float(params["x"]), "nvml_index": float(uuids.index(visible[0])),
            "n_visible_gpus": float(len(visible)), "limit_seen_w": limit_w}

PLATEAU_REPORTS = 100


def plateau(params: dict) -> dict:
    """Learns nothing after its first report: 100 reports of the same accuracy, 0.1 CPU-s each.

    Long enough that a loaded driver still sees several results before it would end.
    """
    for _ in range(PLATEAU_REPORTS):
        _burn(0.1)
        tuner.report(accuracy=float(params["x"]))
    return {"accuracy": float(params["x"])}


def ticking(params: dict) -> dict:
    """Busy for ``seconds`` CPU seconds in 0.25 s ticks, noting its start in ``marks`` (a file).

    Made to be killed mid-flight: the marks say how often each ``x`` was started.
    """
    with open(params["marks"], "a") as handle:
        handle.write(f"{float(params['x']):.6f}\n")
    for step in range(int(float(params.get("seconds", 2.0)) / 0.25)):
        _burn(0.25)
        tuner.report(accuracy=float(params["x"]) * step / 100)
    return {"accuracy": float(params["x"])}


def checkpointing(params: dict) -> dict:
    """``epochs`` epochs of 0.25 CPU-s, checkpointing after each: made to be paused and resumed.

    While the file ``hold`` (optional) exists, the first run waits after its epoch (up to
    60 s, heartbeats going on), so a test can pause it however slow the machine is.
    """
    import os

    state = tuner.get_checkpoint() or {"epoch": 0, "runs": 0}
    start, runs = int(state["epoch"]), int(state["runs"]) + 1
    hold = params.get("hold")
    for epoch in range(start, int(params["epochs"])):
        _burn(0.25)
        tuner.report(accuracy=float(params["x"]) * (epoch + 1) / 100,
                     checkpoint={"epoch": epoch + 1, "runs": runs})
        limit = time.monotonic() + 60
        while runs == 1 and hold and os.path.exists(hold) and time.monotonic() < limit:
            time.sleep(0.1)
    return {"accuracy": float(params["x"]), "runs": float(runs), "resumed_at_epoch": float(start)}


def pid_noter(params: dict) -> dict:
    """Burns ``burn_s`` CPU, sleeps ``sleep_s``, or (``flat``) reports the same accuracy until
    stopped, leaving ``<name>.ended`` in ``pid_dir`` when it ends."""
    from pathlib import Path

    if params["kind"] == "flat":  # the same accuracy report after report: early stopping ends it
        try:
            for _ in range(100):
                _burn(0.2)
                tuner.report(accuracy=0.5)
        finally:
            Path(params["pid_dir"], params["name"] + ".ended").write_text(str(time.time()))
        return {"accuracy": 0.5}
    if params["kind"] == "burn":
        _burn(float(params["burn_s"]))
    else:
        time.sleep(float(params["sleep_s"]))
    return {"accuracy": 0.9}



LIVE_REPORTS = 3


def reports_then_waits(params: dict) -> dict:
    """Reports ``LIVE_REPORTS`` epochs, then waits for ``release`` in ``params['control']``.

    Lets a test look at MLflow while the trial is still running. It returns its last
    reported accuracy, so its final metrics add no point to the history.
    """
    control = Path(params["control"])
    for epoch in range(1, LIVE_REPORTS + 1):
        _burn(0.15)
        tuner.report(accuracy=epoch / 10, loss=1.0 / epoch)
    (control / "reported").touch()
    deadline = time.monotonic() + 120
    while not (control / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"accuracy": LIVE_REPORTS / 10}


def zone_probe(params: dict) -> dict:
    """Which node ran this trial (``GREENTUNE_TEST_NODE``), when its objective ran (wall
    clock), and whether the placement key reached it (it must not)."""
    import os

    started = time.time()
    _burn(1.5)
    return {"accuracy": float(params["x"]), "node_marker": float(os.environ.get("GREENTUNE_TEST_NODE", "0")),
            "t_start": started, "t_end": time.time(), "saw_zone_key": float(any(k.startswith("__") for k in params))}
