"""Pareto plots: every trial by status, the front as a step line, the knee marked.

Interactive HTML from plotly (hover shows a trial's parameters; plotly.js inline, so the
page renders offline) and a PNG from matplotlib, because plotly's static export (kaleido)
needs a browser at run time. Trials without a metric (failed ones, stopped ones that never
reported) are drawn on a strip along the bottom at their energy, so the energy they cost
stays visible. Energy is on a log axis when it spans more than a decade.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tuner.config import ENERGY_METRIC
from tuner.reporting._plotly import hover_text, status_style, write_offline_html

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

    from tuner.result import TuneResult


def log_energy_axis(result: TuneResult) -> bool:
    """True when the plotted energies span more than a decade."""
    energy = result.trials[ENERGY_METRIC]
    energy = energy[energy > 0]
    return len(energy) > 1 and energy.max() / energy.min() > 10


def _placed(result: TuneResult) -> tuple[pd.DataFrame, float | None]:
    """Trials with a y to draw at: their metric, or the bottom strip when they have none."""
    trials = result.trials.copy()
    has = trials[result.metric].notna() if result.metric in trials else pd.Series(False, index=trials.index)
    values = trials.loc[has, result.metric].astype(float)
    strip = None
    if (~has).any():
        low, high = (values.min(), values.max()) if len(values) else (0.0, 1.0)
        span = (high - low) or 1.0
        strip = float(low - 0.08 * span) if result.mode == "max" else float(high + 0.08 * span)
    trials["_y"] = np.where(has, trials[result.metric] if result.metric in trials else np.nan, strip)
    trials["_has_metric"] = has
    return trials, strip


def pareto_figure(result: TuneResult) -> go.Figure:
    """Interactive plot: every trial by status, hover with its parameters, front and knee."""
    import plotly.graph_objects as go

    trials, strip = _placed(result)
    fig = go.Figure()
    for status, group in trials.groupby("status", sort=False):
        label, color, symbol, _ = status_style(status)
        fig.add_trace(go.Scatter(
            x=group[ENERGY_METRIC], y=group["_y"], mode="markers", name=f"{label} ({len(group)})",
            marker={"color": color, "symbol": symbol, "size": 9},
            text=[hover_text(result, row) for _, row in group.iterrows()], hovertemplate="%{text}<extra></extra>",
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
                x=[knee[ENERGY_METRIC]], y=[knee[result.metric]], mode="markers+text",
                name=f"knee (trial {knee['trial_id']})", text=["knee"], textposition="top left",
                marker={"color": "#ff7f0e", "size": 18, "symbol": "star", "line": {"width": 1, "color": "black"}},
                hoverinfo="skip",
            ))
    if strip is not None:
        fig.add_hline(y=strip, line={"dash": "dot", "color": "#d62728", "width": 1},
                      annotation_text="no metric", annotation_position="bottom right")
    fig.update_layout(
        title=f"{result.metric} vs energy per trial ({len(trials)} trials)",
        xaxis_title="energy per trial (kWh)", yaxis_title=result.metric, template="plotly_white",
    )
    fig.update_xaxes(exponentformat="power")  # 1e-4 kWh as 10^-4, as on the slice plots
    if log_energy_axis(result):
        fig.update_xaxes(type="log")
    return fig


def pareto_matplotlib(result: TuneResult) -> Figure:
    """The same picture as :func:`pareto_figure`, as a matplotlib figure (for the PNG)."""
    from matplotlib.figure import Figure

    trials, strip = _placed(result)
    fig = Figure(figsize=(7.5, 4.8), dpi=110)
    ax = fig.subplots()
    if not trials["_has_metric"].any():
        # Nothing to plot against the metric: say so on a plain 0-1 axis (the "no metric"
        # strip alone would set a y range of a few hundredths around -0.08), and still
        # show what each trial cost.
        counts = ", ".join(f"{n} {status_style(s)[0]}" for s, n in trials["status"].value_counts().items())
        ax.text(0.5, 0.6, f"no completed trial: nothing to plot against {result.metric}\n"
                + (f"({len(trials)} trials: {counts})" if len(trials) else "(no trials)"),
                ha="center", va="center", transform=ax.transAxes, fontsize=10)
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        if len(trials) and trials[ENERGY_METRIC].notna().any():
            for status, group in trials.groupby("status", sort=False):
                label, color, _, marker = status_style(status)
                ax.scatter(group[ENERGY_METRIC], np.full(len(group), 0.15), c=color, marker=marker, s=30,
                           label=f"{label} ({len(group)}), no metric")
            if log_energy_axis(result):
                ax.set_xscale("log")
            ax.legend(loc="lower right", fontsize=7)
            ax.set_xlabel("energy per trial (kWh)")
        else:
            ax.set_xticks([])
        ax.set_ylabel(result.metric)
        ax.set_title(f"{result.metric} vs energy per trial ({len(trials)} trials)")
        fig.tight_layout()
        return fig
    for status, group in trials.groupby("status", sort=False):
        label, color, _, marker = status_style(status)
        ax.scatter(group[ENERGY_METRIC], group["_y"], c=color, marker=marker, s=30,
                   label=f"{label} ({len(group)})", alpha=0.85)
    front = result.pareto_front
    if not front.empty:
        ax.step(front[ENERGY_METRIC], front[result.metric], where="post", color="#2ca02c", label=f"Pareto front ({len(front)})")
        knee = result.knee()
        if knee is not None:
            ax.scatter([knee[ENERGY_METRIC]], [knee[result.metric]], marker="*", s=300, c="#ff7f0e",
                       edgecolors="black", linewidths=0.6, label=f"knee (trial {knee['trial_id']})", zorder=5)
    else:
        ax.text(0.5, 0.98, "no completed trial: no front", ha="center", va="top", transform=ax.transAxes, fontsize=9)
    if strip is not None:
        ax.axhline(strip, color="#d62728", ls=":", lw=0.8)
        ax.annotate("no metric", (1, strip), xycoords=("axes fraction", "data"), ha="right",
                    va="bottom", fontsize=7, color="#d62728")
    if log_energy_axis(result):
        ax.set_xscale("log")
    ax.set_xlabel("energy per trial (kWh)")
    ax.set_ylabel(result.metric)
    ax.set_title(f"{result.metric} vs energy per trial ({len(trials)} trials)")
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    return fig


def pareto_html(result: TuneResult, path: Path) -> Path:
    """Write the interactive plot as a page that renders offline (plotly.js inline)."""
    return write_offline_html(pareto_figure(result), path)


def pareto_png(result: TuneResult, path: Path) -> Path:
    """Write the matplotlib figure; ``bbox_inches="tight"`` so no label is cut at the edge."""
    pareto_matplotlib(result).savefig(path, bbox_inches="tight")
    return path
