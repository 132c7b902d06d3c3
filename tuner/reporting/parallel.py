"""Parallel coordinates: one line per completed trial through its parameters, metric and kWh.

The view Optuna users reach for first: which corners of the space the good (and the
cheap) trials came from. Each parameter's axis spans its whole search range, so the
unexplored parts show; log-scale parameters sit on a log10 axis labelled in their own
units, choices on one tick per value. Energy is last, on a log10 axis when it spans more
than a decade. Lines are coloured by the metric, brighter is better.

Only completed trials are drawn: a failed trial has no metric, and a stopped one only a
partial one, which a line would put next to finished results as if it were one. The
title says how many were left out and why; the Pareto and slice plots show them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tuner.config import ENERGY_METRIC, Choice
from tuner.reporting._plotly import check_drawable, left_out, write_offline_html
from tuner.space import SpaceEncoder

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from tuner.result import TuneResult
    from tuner.space import SearchParam


def _log_ticks(low: float, high: float) -> dict[str, Any]:
    """Five ticks across a log10 axis, labelled with the values they stand for."""
    ticks = np.linspace(math.log10(low), math.log10(high), 5)
    return {"tickvals": ticks.tolist(), "ticktext": [f"{10 ** t:.3g}" for t in ticks]}


def _parameter(name: str, param: SearchParam, values: pd.Series) -> dict[str, Any]:
    if isinstance(param, Choice):
        codes = SpaceEncoder({name: param}).design_of(name, list(values))
        k = len(param.values)
        return {"label": name, "values": codes, "tickvals": list(range(k)),
                "ticktext": [str(v) for v in param.values], "range": [0, k - 1] if k > 1 else [-0.5, 0.5]}
    x = values.astype(float).to_numpy()
    if param.log:
        low, high = float(param.low), float(param.high)
        return {"label": f"{name} (log)", "values": np.log10(x),
                "range": [math.log10(low), math.log10(high)], **_log_ticks(low, high)}
    return {"label": name, "values": x, "range": [float(param.low), float(param.high)]}


def _energy(energy: pd.Series) -> dict[str, Any]:
    x = energy.astype(float).to_numpy()
    positive = x[x > 0]
    if len(positive) == len(x) and positive.max() / positive.min() > 10:
        return {"label": "energy kWh (log)", "values": np.log10(x),
                **_log_ticks(float(positive.min()), float(positive.max()))}
    return {"label": "energy kWh", "values": x}


def parallel_figure(result: TuneResult) -> go.Figure:
    """Parallel coordinates of the completed trials; raises ``ValueError`` below two of them."""
    import plotly.graph_objects as go

    check_drawable(result)
    done = result.completed
    space = result.config.tunable
    dimensions = [_parameter(name, param, done[name]) for name, param in space.items()]
    dimensions += [{"label": result.metric, "values": done[result.metric].astype(float).to_numpy()},
                   _energy(done[ENERGY_METRIC])]
    title = f"Parallel coordinates: {len(done)} completed trials"
    others = result.trials.drop(index=done.index)
    if not others.empty:
        title += f" ({left_out(others)} not drawn: no final {result.metric})"
    fig = go.Figure(go.Parcoords(
        dimensions=dimensions,
        line={"color": done[result.metric].astype(float), "colorscale": "Viridis",
              "reversescale": result.mode == "min", "showscale": True,
              "colorbar": {"title": {"text": result.metric}}},
        labelangle=-20,
    ))
    fig.update_layout(title=title, template="plotly_white", margin={"t": 110, "l": 70, "r": 70})
    return fig


def parallel_html(result: TuneResult, path: Path) -> Path:
    """Write the parallel-coordinates page (renders offline)."""
    return write_offline_html(parallel_figure(result), path)
