"""Slice plots: each parameter against the metric (left) and against energy (right).

Optuna's slice plot, for both of greentune's objectives: one row per parameter, so a
parameter that buys accuracy and one that only burns kWh are told apart at a glance.
Each x axis follows the search space: log-scale parameters on a log axis, choices as
categories in their declared order. Energy is on a log axis when it spans more than a
decade, and the metric axis is shared down the left column (energy down the right), so
rows compare.

Every trial is drawn, marked by status as on the Pareto plot. Trials with no metric
(failed ones, stopped ones that never reported) appear in the energy column only: their
kWh was spent all the same. The title says how many.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tuner.config import ENERGY_METRIC, Choice
from tuner.reporting._plotly import (
    by_status,
    check_drawable,
    hover_text,
    left_out,
    status_style,
    write_offline_html,
)
from tuner.reporting.pareto import log_energy_axis
from tuner.space import SpaceEncoder

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from tuner.result import TuneResult
    from tuner.space import SearchParam

_ROW_PX = 270


def _x(name: str, param: SearchParam, values: pd.Series) -> tuple[list[Any], dict[str, Any]]:
    """The x values of one parameter and its axis settings."""
    if isinstance(param, Choice):
        codes = SpaceEncoder({name: param}).design_of(name, list(values)).astype(int)
        labels = [str(v) for v in param.values]
        return [labels[c] for c in codes], {"type": "category", "categoryorder": "array",
                                            "categoryarray": labels, "title": {"text": name}}
    axis = {"type": "log" if param.log else "linear",
            "title": {"text": f"{name} (log scale)" if param.log else name}}
    if float(param.low) < 0.01:  # 1e-4, not plotly's "100µ"
        axis["exponentformat"] = "power"
    return values.astype(float).tolist(), axis


def slices_figure(result: TuneResult) -> go.Figure:
    """One row per parameter: metric and energy against it; raises ``ValueError`` below two completed trials."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    check_drawable(result)
    space = result.config.tunable
    trials = result.trials
    has_metric = trials[result.metric].notna() if result.metric in trials else pd.Series(False, index=trials.index)
    better = "higher" if result.mode == "max" else "lower"
    fig = make_subplots(
        rows=len(space), cols=2, shared_yaxes="columns", horizontal_spacing=0.1,
        vertical_spacing=min(0.25 / len(space), 0.08),
        column_titles=[f"{result.metric} ({better} is better)", "energy per trial (kWh)"],
    )
    columns = [(has_metric, result.metric), (pd.Series(True, index=trials.index), ENERGY_METRIC)]
    in_legend: set[str] = set()
    for row, (name, param) in enumerate(space.items(), start=1):
        x, axis = _x(name, param, trials[name])
        x = pd.Series(x, index=trials.index)
        for col, (shown, y) in enumerate(columns, start=1):
            for status, group in by_status(trials[shown]):
                label, color, symbol, _ = status_style(status)
                fig.add_trace(go.Scatter(
                    x=x[group.index].tolist(), y=group[y].astype(float), mode="markers", name=label,
                    legendgroup=label, showlegend=label not in in_legend,
                    marker={"color": color, "symbol": symbol, "size": 7, "opacity": 0.8},
                    text=[hover_text(result, r) for _, r in group.iterrows()],
                    hovertemplate="%{text}<extra></extra>",
                ), row=row, col=col)
                in_legend.add(label)
            fig.update_xaxes(axis, row=row, col=col)
        if log_energy_axis(result):
            fig.update_yaxes(type="log", row=row, col=2)
    title = f"Slices: {len(trials)} trials, each parameter against {result.metric} and energy"
    if (~has_metric).any():
        title += f"<br><sub>{left_out(trials[~has_metric])} without {result.metric}: energy column only</sub>"
    fig.update_layout(title=title, template="plotly_white", height=_ROW_PX * len(space) + 160,
                      legend={"title": {"text": "status"}})
    fig.update_yaxes(exponentformat="power", col=2)
    return fig


def slices_html(result: TuneResult, path: Path) -> Path:
    """Write the slice plots page (renders offline)."""
    return write_offline_html(slices_figure(result), path)
