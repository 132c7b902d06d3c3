"""``greentune report RUN_ID|OUTPUT_DIR``: rebuild a study's report from MLflow or disk."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_report_command(commands: argparse._SubParsersAction) -> None:
    """Register the ``report`` subcommand on the ``greentune`` parser."""
    report = commands.add_parser(
        "report", help="rebuild a study's report (plots, sensitivity, budget curve, price tag)",
        description="Rebuild the report of a finished study from its output directory "
                    "(trials.csv + study.json) or its parent MLflow run, without rerunning anything.",
    )
    report.add_argument("source", help="a study's output directory, or its parent MLflow run id")
    report.add_argument("--tracking-uri", help="MLflow tracking URI for a run id (default: MLFLOW_TRACKING_URI)")
    report.add_argument("--output-dir", help="where to write the report (default: the study directory, "
                                             "or ./greentune-report-<run id> for a run id)")


def run_report(args: argparse.Namespace) -> int:
    from tuner.config import ConfigError
    from tuner.reporting.build import build_report
    from tuner.reporting.load import load_from_dir, load_from_mlflow

    source = Path(args.source).expanduser()
    try:
        if source.is_dir():
            result = load_from_dir(source)
            default_out = source
        else:
            uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
            if uri is None:
                raise ConfigError(f"'{args.source}' is not a directory; for an MLflow run id pass "
                                  "--tracking-uri or set MLFLOW_TRACKING_URI")
            result = load_from_mlflow(args.source, uri)
            default_out = Path(f"greentune-report-{args.source}")
    except ConfigError as exc:
        print(f"greentune: {exc}", file=sys.stderr)
        return 2
    files = build_report(result, Path(args.output_dir) if args.output_dir else default_out)
    for path in files.values():
        print(path)
    print(f"\nreport: {files['report']}")
    return 0
