"""One entry point: every report artifact for a :class:`TuneResult`, written to one directory.

Each part is built on its own: a part that cannot be computed (too few trials, a
surrogate that will not fit) is reported as such in ``report.html`` and the log, and
never costs the others.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.reporting._plotly import too_few_completed
from tuner.reporting.budget_curve import budget_curves, budget_figure
from tuner.reporting.html import render_report
from tuner.reporting.parallel import parallel_html
from tuner.reporting.pareto import pareto_html, pareto_png
from tuner.reporting.price import price_tag
from tuner.reporting.progress import hypervolume_progress, progress_figure
from tuner.reporting.sensitivity import Sensitivity, sensitivity, sensitivity_figure
from tuner.reporting.slices import slices_html

if TYPE_CHECKING:
    from tuner.result import TuneResult

logger = logging.getLogger("tuner")


def build_report(result: TuneResult, directory: str | Path) -> dict[str, Path]:
    """Write the report's files into ``directory``; returns them by name, ``report`` last.

    Everything is computed from ``result`` (its trials table, totals and config) with fixed
    seeds, so a report rebuilt from disk or MLflow matches the one the study wrote.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    notes: dict[str, str] = {}

    def attempt(name: str, build: Any) -> Any:
        try:
            return build()
        except Exception as exc:  # noqa: BLE001 - one failed part must not lose the rest
            logger.warning("report: could not build %s: %s: %s", name, type(exc).__name__, exc)
            notes[name] = f"{type(exc).__name__}: {exc}"
            return None

    def pareto() -> None:
        files["pareto_html"] = pareto_html(result, out / "pareto.html")
        files["pareto_png"] = pareto_png(result, out / "pareto.png")

    attempt("pareto", pareto)
    # Per-parameter pages: below two completed trials there is nothing to compare, and
    # report.html says so instead of linking an empty plot.
    for name, write in (("parallel", parallel_html), ("slices", slices_html)):
        reason = too_few_completed(result)
        if reason is not None:
            notes[name] = reason
            continue
        page = attempt(name, lambda write=write, name=name: write(result, out / f"{name}.html"))
        if page is not None:
            files[f"{name}_html"] = page
    tag = price_tag(result)
    files["price_tag"] = _write_json(out / "price_tag.json", tag.as_dict())

    found: Sensitivity | None = attempt("sensitivity", lambda: sensitivity(result))
    if found is not None:
        # Written even without indices: the file and the figure then say why (the gate).
        found.frame().to_csv(out / "sensitivity.csv", index=False)
        files["sensitivity_csv"] = out / "sensitivity.csv"
        files["sensitivity_png"] = _save(sensitivity_figure(found, result.metric), out / "sensitivity.png")

    def curves() -> None:
        by_energy, by_trials = budget_curves(result)
        if by_energy.empty:
            notes["budget_curve"] = "no completed trials"
            return
        by_energy.to_csv(out / "budget_curve_kwh.csv", index=False)
        by_trials.to_csv(out / "budget_curve_trials.csv", index=False)
        files["budget_curve_kwh_csv"] = out / "budget_curve_kwh.csv"
        files["budget_curve_trials_csv"] = out / "budget_curve_trials.csv"
        files["budget_curve_png"] = _save(budget_figure(result, by_energy, by_trials), out / "budget_curve.png")

    attempt("budget_curve", curves)

    def progress() -> None:
        table = hypervolume_progress(result)
        table.to_csv(out / "progress.csv", index=False)
        files["progress_csv"] = out / "progress.csv"
        files["progress_png"] = _save(progress_figure(result, table), out / "progress.png")

    attempt("progress", progress)
    files["report"] = render_report(result, files, tag, found, notes, out / "report.html")
    return files


def _save(figure: Any, path: Path) -> Path:
    figure.savefig(path, bbox_inches="tight")  # no label cut off at the edge
    return path


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2, default=str))
    return path
