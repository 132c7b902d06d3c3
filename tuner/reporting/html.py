"""``report.html``: one self-contained page (PNGs inlined) that links every artifact.

Inlined images keep the page readable in MLflow's artifact viewer, where relative
links to sibling files do not resolve; the links still work when opened from disk.
The page loads nothing from the network, so it renders on an air-gapped machine.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from tuner.config import ENERGY_METRIC
from tuner.redact import redact

if TYPE_CHECKING:
    from tuner.reporting.price import PriceTag
    from tuner.reporting.sensitivity import Sensitivity
    from tuner.result import TuneResult

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f3f3f3;text-align:left}img{max-width:100%;border:1px solid #eee}.method{color:#555;font-size:13px}"""


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<p><a href="{path.name}"><img alt="{path.stem}" src="data:image/png;base64,{data}"></a></p>'


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, float_format=lambda v: f"{v:.4g}", na_rep="")


def _sensitivity_section(found: Sensitivity, artifacts: dict[str, Path]) -> str:
    """The gate for each objective (trials, cross-validated R^2, passed or why not), the
    figure, and the indices with their 95 % intervals."""
    from tuner.reporting.sensitivity import R2_THRESHOLD

    esc = html.escape
    parts = []
    if found.note:
        parts.append(f"<p>No indices: {esc(found.note)}.</p>")
    else:
        parts.append(f"<p class='method'>Method: {esc(found.method)}.</p>")
    gate = pd.DataFrame([{"objective": c.objective, "completed trials": c.n_trials,
                          "CV R^2": c.cv_r2, f"needed R^2 >= {R2_THRESHOLD:g}": c.label}
                         for c in found.checks.values()])
    if not gate.empty:
        parts.append(_table(gate))
    if "sensitivity_png" in artifacts:
        parts.append(_image(artifacts["sensitivity_png"]))
    if not found.table.empty:
        table = found.table.copy()
        for name in ("first_order", "total_order"):
            table[name] = [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in
                           zip(table[name], table[f"{name}_low"], table[f"{name}_high"], strict=True)]
        parts.append(_table(table[["objective", "parameter", "first_order", "total_order", "direction"]]
                            .rename(columns={"first_order": "first order, median [95 % interval]",
                                             "total_order": "total, median [95 % interval]"})))
    return "\n".join(parts)


def render_report(result: TuneResult, artifacts: dict[str, Path], tag: PriceTag, found: Sensitivity | None,
                  notes: dict[str, str], path: Path) -> Path:
    """Write the page; ``artifacts`` maps a short name to a file in the same directory."""
    esc = html.escape
    name = result.config.study_name if result.config is not None else "study"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>greentune report: {esc(name)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>greentune report: {esc(name)}</h1>",
             f"<p>{esc(result.summary()).replace(chr(10), '<br>')}</p>"]
    if result.mlflow_run_id:
        parts.append(f"<p>MLflow run <code>{esc(result.mlflow_run_id)}</code> at <code>{esc(redact(str(result.tracking_uri)))}</code></p>")

    parts.append("<h2>Price tag</h2><table>")
    parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in tag.lines()]
    parts.append("</table>")
    if tag.grid is not None:
        parts.append(f"<p class='method'>Grid estimate: {esc(tag.grid.method)}.</p>")

    parts.append("<h2>Pareto front</h2>")
    if "pareto_html" in artifacts:
        parts.append(f"<p><a href='{artifacts['pareto_html'].name}'>interactive plot (hover for parameters)</a></p>")
    if "pareto_png" in artifacts:
        parts.append(_image(artifacts["pareto_png"]))
    front = result.pareto_front
    if not front.empty:
        knee = result.knee()
        table = front[["trial_id", result.metric, ENERGY_METRIC, *result.param_names]].copy()
        table.insert(0, "knee", ["*" if knee is not None and i == knee.name else "" for i in table.index])
        parts.append(_table(table))

    parts.append("<h2>Parameters</h2>")
    for key, label, what in (
        ("parallel", "Parallel coordinates", "one line per completed trial through its parameters, "
                                             f"{result.metric} and kWh"),
        ("slices", "Slice plots", f"each parameter against {result.metric} and against kWh, every trial by status"),
    ):
        if f"{key}_html" in artifacts:
            parts.append(f"<p><a href='{artifacts[f'{key}_html'].name}'>{label}</a>: {esc(what)}.</p>")
        else:
            parts.append(f"<p>{label} not drawn: {esc(notes.get(key, 'unavailable'))}</p>")

    parts.append("<h2>Hyperparameter sensitivity</h2>")
    if found is None:
        parts.append(f"<p>Not computed: {esc(notes.get('sensitivity', 'unavailable'))}</p>")
    else:
        parts.append(_sensitivity_section(found, artifacts))

    parts.append("<h2>Budget curve</h2>")
    if "budget_curve_png" in artifacts:
        parts.append("<p class='method'>Expected best metric of random draws from the completed trials, "
                     "by number of trials (Dodge et al. 2019, closed form) and by energy budget (same draws, "
                     "stopped by cumulative kWh; Monte Carlo over all draws, a draw that finished no trial "
                     "within the budget scoring the worst completed trial, so the curve never falls with "
                     "more budget; the share of draws with a result is drawn beside it, and budgets where "
                     "it is below one half are left out). See tuner/reporting/budget_curve.py.</p>")
        parts.append(_image(artifacts["budget_curve_png"]))
    else:
        parts.append(f"<p>Not computed: {esc(notes.get('budget_curve', 'no completed trials'))}</p>")

    parts.append("<h2>Progress</h2>")
    if "progress_png" in artifacts:
        parts.append("<p class='method'>Absolute hypervolume of the front so far (metric gain x decades of "
                     "kWh below the reference point stated on the plot; see tuner/reporting/progress.py). "
                     "Studies are comparable only when they share a reference point.</p>")
        parts.append(_image(artifacts["progress_png"]))
    else:
        parts.append(f"<p>Not computed: {esc(notes.get('progress', 'unavailable'))}</p>")

    parts.append("<h2>Files</h2><ul>")
    parts += [f"<li><a href='{p.name}'>{esc(p.name)}</a></li>" for p in artifacts.values()]
    parts.append("</ul></body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
