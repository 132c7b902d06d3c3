"""Objectives that return (or report) every kind of bad metric, chosen by ``params["kind"]``."""

from __future__ import annotations

import math

import tuner

BAD_RETURNS = {
    "nan": {"accuracy": math.nan},
    "inf": {"accuracy": math.inf},
    "neg_inf": {"accuracy": -math.inf},
    "str_value": {"accuracy": "0.9"},
    "none_value": {"accuracy": None},
    "nothing": None,
    "a_string": "0.9",
    "a_float": 0.9,
    "nan_energy": {"accuracy": 0.5, "energy_kwh": math.nan},
}


def bad_return(params: dict) -> object:
    """The bad value named by ``kind``; ``good`` returns a sound result."""
    kind = params["kind"]
    if kind == "good":
        return {"accuracy": 0.8}
    if kind == "reports_nan":
        tuner.report(accuracy=math.nan)
        return {"accuracy": 0.8}
    return BAD_RETURNS[kind]
