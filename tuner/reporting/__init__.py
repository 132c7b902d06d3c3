"""The study report: Pareto, parallel-coordinates and slice plots, sensitivity, budget
curves, progress and the price tag.

``build_report(result, directory)`` writes them all (and ``report.html``); the modules
below each own one part. Heavy imports (plotly, matplotlib, torch, scikit-learn) happen
inside the functions that need them.
"""

from tuner.reporting.build import build_report

__all__ = ["build_report"]
