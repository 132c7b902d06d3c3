"""Trial tables with known structure, for the report tests (no Ray, no training)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tuner.config import load_config
from tuner.result import TuneResult

SPACE = {
    "lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-1, "log": True},
    "epochs": {"type": "int", "low": 1, "high": 20},
    "width": {"type": "int", "low": 16, "high": 256, "log": True},
    "optimizer": {"type": "choice", "values": ["adam", "sgd"]},
    "threads": {"type": "fixed", "value": 1},  # a constant, as in the quickstart: no axis of its own
}
TUNABLE = {name: spec for name, spec in SPACE.items() if spec["type"] != "fixed"}


def never_called(params: dict) -> dict:
    raise AssertionError("report tests never run the objective")


def study_config(**overrides):
    return load_config({"objective": never_called, "name": "synthetic", "search_space": SPACE,
                        "budget_kwh": 1.0, "strategy": "random", "grid_resolution": 3, **overrides})


def synthetic_result(n: int = 40, seed: int = 0, accuracy_sign: float = 1.0, noise: float = 0.005,
                     failed: int = 2, stopped: int = 2, overhead_kwh: float = 2e-4, **config) -> TuneResult:
    """Accuracy driven by log10(lr) (sign ``accuracy_sign``), energy exactly linear in epochs.

    Energy = 1e-4 kWh per epoch, plus a 1 % ripple from width: epochs must dominate it.
    """
    rng = np.random.default_rng(seed)
    lr = np.exp(rng.uniform(math.log(1e-4), math.log(1e-1), n))
    epochs = rng.integers(1, 21, n)
    width = np.exp(rng.uniform(math.log(16), math.log(256), n)).round().astype(int)
    optimizer = rng.choice(["adam", "sgd"], n)
    lr_unit = (np.log10(lr) + 4) / 3
    accuracy = 0.6 + accuracy_sign * 0.3 * lr_unit + rng.normal(0, noise, n)
    energy = 1e-4 * epochs * (1 + 0.01 * np.log2(width / 16) / 4)
    status = ["completed"] * n
    for i in range(failed):
        status[i] = "failed"
    for i in range(failed, failed + stopped):
        status[i] = "stopped_by_budget"
    frame = pd.DataFrame({
        "trial_id": [f"t{i:03d}" for i in range(n)], "status": status,
        "lr": lr, "epochs": epochs, "width": width, "optimizer": optimizer, "threads": 1,
        "accuracy": accuracy, "energy_kwh": energy, "energy_source": "cpu-time-estimate",
        "duration_s": epochs * 3.0, "error": None,
    })
    frame.loc[frame["status"] == "failed", "accuracy"] = np.nan
    frame.loc[frame["status"] == "failed", "error"] = "RuntimeError: deliberate"
    cfg = study_config(**config)
    return TuneResult(
        trials=frame, metric="accuracy", mode=cfg.mode, budget_kwh=cfg.budget_kwh,
        total_energy_kwh=float(frame["energy_kwh"].sum()) + overhead_kwh, overhead_kwh=overhead_kwh,
        param_names=list(SPACE), pue=cfg.pue, config=cfg,
    )
