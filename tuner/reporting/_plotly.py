"""What every interactive page shares: offline HTML, the status styles, the hover text.

Pages carry plotly.js inline (about 4.7 MB each) rather than loading it from a CDN or a
sibling ``plotly.min.js``: a CDN page is blank on an air-gapped cluster, and MLflow's
artifact viewer shows one file at a time, so a relative script would not load there
either. One self-contained file works opened from disk, downloaded from MLflow or
viewed in its UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from tuner.config import ENERGY_METRIC
from tuner.study.record import TrialStatus

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from tuner.result import TuneResult

# status -> (label, colour, plotly symbol, matplotlib marker)
STATUS_STYLE = {
    TrialStatus.COMPLETED.value: ("completed", "#1f77b4", "circle", "o"),
    TrialStatus.FAILED.value: ("failed", "#d62728", "x", "x"),
    TrialStatus.STOPPED_BY_BUDGET.value: ("stopped by budget", "#7f7f7f", "diamond", "D"),
    TrialStatus.STOPPED.value: ("stopped", "#9467bd", "diamond-open", "d"),
    TrialStatus.INTERRUPTED.value: ("interrupted (driver died)", "#8c564b", "square-open", "s"),
}
OTHER_STYLE = ("other", "#bcbd22", "circle-open", "o")

# Below this many completed trials a parallel-coordinates or slice plot compares nothing.
MIN_COMPLETED = 2


def status_style(status: object) -> tuple[str, str, str, str]:
    """(label, colour, plotly symbol, matplotlib marker) of a trial status."""
    return STATUS_STYLE.get(str(status), OTHER_STYLE)


def by_status(trials: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The trials grouped by status, completed first, so legends read the same on every plot."""
    order = list(STATUS_STYLE)
    groups = [(str(s), g) for s, g in trials.groupby("status", sort=False)]
    return sorted(groups, key=lambda sg: order.index(sg[0]) if sg[0] in order else len(order))


def too_few_completed(result: TuneResult) -> str | None:
    """Why a per-parameter plot is not drawn, or ``None`` when it can be."""
    n = len(result.completed)
    if n >= MIN_COMPLETED:
        return None
    return f"needs at least {MIN_COMPLETED} completed trials; this study has {n}"


def check_drawable(result: TuneResult) -> None:
    """Raise ``ValueError`` saying why a per-parameter plot cannot be drawn: too few
    completed trials, or no config (so no search space) on the result."""
    reason = too_few_completed(result)
    if reason is not None:
        raise ValueError(reason)
    if result.config is None:
        raise ValueError("the result carries no config, so no search space to draw")


def left_out(trials: pd.DataFrame) -> str:
    """'3 failed, 1 stopped by budget': the trials a plot of completed ones does not show."""
    counts = trials["status"].value_counts()
    return ", ".join(f"{n} {status_style(s)[0]}" for s, n in counts.items())


def hover_text(result: TuneResult, row: pd.Series) -> str:
    """One trial's id, status, parameters, metric, kWh and (if it failed) its error."""
    params = "<br>".join(f"{p}={row[p]}" for p in result.param_names if p in row)
    value = row.get(result.metric)
    metric = f"{value:.4g}" if pd.notna(value) else "none"
    extra = f"<br>error: {str(row['error'])[:120]}" if isinstance(row.get("error"), str) else ""
    return (f"trial {row['trial_id']} ({row['status']})<br>{params}<br>{result.metric}={metric}"
            f"<br>kWh={row[ENERGY_METRIC]:.4g}{extra}")


def write_offline_html(figure: go.Figure, path: Path) -> Path:
    """Write ``figure`` as one HTML file that renders with no network (plotly.js inline)."""
    figure.write_html(path, include_plotlyjs=True, full_html=True)
    return path
