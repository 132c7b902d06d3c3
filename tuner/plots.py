"""Pareto scatter plots: interactive HTML (plotly) and a static PNG (matplotlib).

PNG comes from matplotlib rather than plotly's kaleido, which needs a browser at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tuner.config import ENERGY_METRIC

if TYPE_CHECKING:
    from tuner.result import TuneResult

_STATUS_STYLE = {
    "completed": ("#1f77b4", "circle"),
    "failed": ("#d62728", "x"),
    "stopped_by_budget": ("#7f7f7f", "diamond"),
    "stopped": ("#7f7f7f", "diamond"),
}


def _log_axis(result: TuneResult) -> bool:
    energy = result.trials[ENERGY_METRIC]
    energy = energy[energy > 0]
    return len(energy) > 1 and energy.max() / energy.min() > 10


def pareto_html(result: TuneResult, path: Path) -> Path:
    """Every trial by status, the front as a step line, hover showing parameters."""
    import plotly.graph_objects as go

    fig = go.Figure()
    trials = result.trials
    for status, group in trials.groupby("status"):
        color, symbol = _STATUS_STYLE.get(str(status), ("#bcbd22", "circle"))
        y = group[result.metric] if result.metric in group else [None] * len(group)
        hover = [
            "<br>".join(f"{p}={row[p]}" for p in result.param_names if p in row)
            + f"<br>trial {row['trial_id']}"
            for _, row in group.iterrows()
        ]
        fig.add_trace(go.Scatter(
            x=group[ENERGY_METRIC], y=y, mode="markers", name=str(status),
            marker={"color": color, "symbol": symbol, "size": 9}, text=hover,
            hovertemplate="%{text}<br>kWh=%{x:.3g}<br>" + result.metric + "=%{y:.4g}<extra></extra>",
        ))
    front = result.pareto_front
    if not front.empty:
        fig.add_trace(go.Scatter(
            x=front[ENERGY_METRIC], y=front[result.metric], mode="lines", name="Pareto front",
            line={"shape": "hv", "color": "#2ca02c"}, hoverinfo="skip",
        ))
        knee = result.knee()
        if knee is not None:
            fig.add_trace(go.Scatter(
                x=[knee[ENERGY_METRIC]], y=[knee[result.metric]], mode="markers", name="knee",
                marker={"color": "#ff7f0e", "size": 16, "symbol": "star"}, hoverinfo="skip",
            ))
    fig.update_layout(
        title=f"{result.metric} vs energy ({len(trials)} trials)",
        xaxis_title="energy per trial (kWh)", yaxis_title=result.metric, template="plotly_white",
    )
    if _log_axis(result):
        fig.update_xaxes(type="log")
    fig.write_html(path, include_plotlyjs="cdn")
    return path


def pareto_png(result: TuneResult, path: Path) -> Path:
    """The same picture as :func:`pareto_html`, as a static image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    markers = {"circle": "o", "x": "x", "diamond": "D"}
    for status, group in result.trials.groupby("status"):
        if result.metric not in group:
            continue
        color, symbol = _STATUS_STYLE.get(str(status), ("#bcbd22", "circle"))
        ax.scatter(group[ENERGY_METRIC], group[result.metric], c=color, marker=markers[symbol], label=str(status))
    front = result.pareto_front
    if not front.empty:
        ax.step(front[ENERGY_METRIC], front[result.metric], where="post", color="#2ca02c", label="Pareto front")
        knee = result.knee()
        if knee is not None:
            ax.scatter([knee[ENERGY_METRIC]], [knee[result.metric]], marker="*", s=250, c="#ff7f0e", label="knee", zorder=5)
    if _log_axis(result):
        ax.set_xscale("log")
    ax.set_xlabel("energy per trial (kWh)")
    ax.set_ylabel(result.metric)
    ax.set_title(f"{result.metric} vs energy ({len(result.trials)} trials)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
