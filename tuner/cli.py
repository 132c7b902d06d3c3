"""``greentune`` command line: run a study (here, or on a cluster with ``submit``), follow it,
rebuild its report, restore its files, meter a command, plan for carbon."""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tuner.carbon.cli import add_commands as add_carbon_commands
from tuner.carbon.cli import run as run_carbon
from tuner.config import ConfigError
from tuner.energy.cli import add_meter_command
from tuner.errors import GreentuneWarning, NoCompletedTrialWarning
from tuner.jobs import add_commands as add_job_commands
from tuner.redact import install_log_redaction, redact
from tuner.reporting.cli import add_report_command, run_report

if TYPE_CHECKING:
    from tuner.result import TuneResult


EXIT_CODES = """exit codes of `greentune run`:
  0  the study finished with at least one completed trial
  1  greentune itself failed (the traceback is printed)
  2  the study was refused before any trial ran (bad config, output_dir in use, ...)
  3  stopped after max_consecutive_failures trials failed in a row
  4  the study ended with no completed trial (e.g. a budget smaller than one trial)
  130, 143  interrupted by Ctrl-C (SIGINT) or SIGTERM; go on with --resume"""
EXIT_FAILING_TRIALS = 3
EXIT_NO_COMPLETED_TRIAL = 4


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="greentune", description="Energy-aware hyperparameter tuning.")
    parser.add_argument("--version", action="version", version=f"greentune {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a study from a YAML file", epilog=EXIT_CODES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("study", help="path to the study YAML")
    run.add_argument("--budget-kwh", type=float, help="energy budget in kWh (overrides the file)")
    run.add_argument("--max-trials", type=int, help="stop after this many trials")
    run.add_argument("--strategy", choices=["bo", "grid", "random", "sobol"],
                     help="search strategy: bo (Ax/BoTorch, the default), or the baselines grid, random "
                          "and sobol (overrides the file)")
    run.add_argument("--seed", type=int, help="seed for the searcher, for a repeatable search (overrides the file)")
    run.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else local)")
    run.add_argument("--output-dir", help="where the study's state, trials and MLflow store go")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument("--resume", action="store_true",
                     help="continue the study in its output_dir after a crash, keeping what it measured")
    run.set_defaults(handler=_run)
    add_carbon_commands(commands)
    commands.choices["carbon"].set_defaults(handler=run_carbon)
    add_report_command(commands)
    commands.choices["report"].set_defaults(handler=run_report)
    add_meter_command(commands)  # sets its own handler
    flush = commands.add_parser(
        "flush", help="send a study's queued MLflow records (kept while the server was down)",
        description="Replay OUTPUT_DIR/mlflow-queue.jsonl to the study's MLflow run, in order.",
    )
    flush.add_argument("output_dir", help="the study's output directory")
    flush.set_defaults(handler=_flush)
    pull = commands.add_parser(
        "pull", help="restore a study's files from its MLflow run (to resume it on another machine)",
        description="Download the files a study copied to its MLflow parent run (study/ in its artifacts) into "
                    "OUTPUT_DIR. A file already in OUTPUT_DIR is kept: the local books win. `greentune run STUDY "
                    "--resume` does this by itself when its output_dir holds no study.",
        epilog="exit codes: 0 restored; 2 nothing to restore (no such study or run, no synced files)",
    )
    pull.add_argument("study", help="the study's name, or its MLflow parent run id")
    pull.add_argument("--output-dir", required=True, help="where to put the study's files")
    pull.add_argument("--tracking-uri", help="the MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    pull.add_argument("--experiment", help="the study's MLflow experiment (default: greentune-<name>)")
    pull.set_defaults(handler=_pull)
    add_job_commands(commands)  # submit and status, with their handlers
    args = parser.parse_args(argv)
    install_log_redaction()
    return args.handler(args)


def _version() -> str:
    """The installed ``greentune`` distribution's version (a source tree without one says so)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("greentune")
    except PackageNotFoundError:
        from tuner import __version__

        return f"{__version__} (not installed)"


def _run(args: argparse.Namespace) -> int:
    from tuner.study import tune

    try:
        with warnings.catch_warnings():
            _show_warnings_on_one_line()
            result = tune(
                args.study,
                budget_kwh=args.budget_kwh,
                max_trials=args.max_trials,
                strategy=args.strategy,
                seed=args.seed,
                address=args.address,
                output_dir=args.output_dir,
                progress=not args.quiet,
                resume=args.resume,
            )
    except ConfigError as exc:
        print(f"greentune: {one_line(exc)}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - a real failure keeps its traceback, secrets masked
        print(redact(traceback.format_exc()), file=sys.stderr, end="")
        return 1
    print("\nPareto front (metric vs energy per trial; * marks the knee):")
    print(result.front_table())
    if args.quiet:  # otherwise tune() has already printed the summary with the progress
        print()
        print(result.summary())
    print(f"\ntrials table: {result.output_dir / 'trials.csv'}")
    print(f"MLflow run {result.mlflow_run_id}; open it with:\n  mlflow ui --backend-store-uri {redact(str(result.tracking_uri))}")
    if result.interrupted:
        print(f"\nthe study was {result.finish_reason}; go on with:\n  greentune run {args.study} --resume"
              + (f" --output-dir {args.output_dir}" if args.output_dir else ""), file=sys.stderr)
        return 128 + (signal.SIGTERM if "SIGTERM" in str(result.finish_reason) else signal.SIGINT)
    return _exit_code(result)


def _show_warnings_on_one_line() -> None:
    """greentune's own warnings as ``greentune: warning: ...`` lines, each time they occur
    (inside ``warnings.catch_warnings()``); an empty front is said by the exit line instead."""
    original = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if issubclass(category, GreentuneWarning):
            print(f"greentune: warning: {one_line(message)}", file=sys.stderr, flush=True)  # type: ignore[arg-type]
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("always", GreentuneWarning)
    warnings.simplefilter("ignore", NoCompletedTrialWarning)


def _exit_code(result: TuneResult) -> int:
    """0, or (with one line on stderr) 3: stopped by ``max_consecutive_failures``;
    4: the study ended with no completed trial, so it found nothing."""
    if result.consecutive_failures is not None:
        print(f"greentune: stopped: {one_line(result.finish_reason or '')}", file=sys.stderr)
        return EXIT_FAILING_TRIALS
    if result.completed.empty:
        why = one_line(result.finish_reason or "no reason recorded")
        print(f"greentune: no trial completed ({why}); the Pareto front is empty", file=sys.stderr)
        return EXIT_NO_COMPLETED_TRIAL
    return 0


def one_line(exc: BaseException) -> str:
    """An error as one line with secrets masked: what a terminal or CI log should show."""
    return redact(" ".join(str(exc).split()))


def _flush(args: argparse.Namespace) -> int:
    """Exit 0 when the queue is empty afterwards, 1 when records are still waiting."""
    from pathlib import Path

    from tuner.tracking.queue import QUEUE_FILE, flush_output_dir

    out = Path(args.output_dir).expanduser()
    if not (out / "study.json").is_file():
        print(f"greentune: '{out}' is not a study's output directory (no study.json)", file=sys.stderr)
        return 2
    try:
        left, written = flush_output_dir(out)
    except Exception as exc:  # noqa: BLE001 - the server is still down: say so, keep the queue
        print(f"greentune: could not reach MLflow ({one_line(exc)[:300]}); "
              f"{out / QUEUE_FILE} is kept", file=sys.stderr)
        return 1
    print(f"flushed {written} record(s) to MLflow; {left} still queued")
    return 1 if left else 0


def _pull(args: argparse.Namespace) -> int:
    """Exit 0 when the files are in place, 2 when MLflow has none to give."""
    import os
    import re
    from pathlib import Path

    from tuner.tracking.sync import find_study_run, pull_study

    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        print("greentune: pull needs --tracking-uri or MLFLOW_TRACKING_URI (where the study's MLflow run is)",
              file=sys.stderr)
        return 2
    out = Path(args.output_dir).expanduser().resolve()
    try:
        run_id = args.study if re.fullmatch(r"[0-9a-f]{32}", args.study) else \
            find_study_run(uri, args.study, args.experiment)
        written = pull_study(uri, run_id, out)
    except ConfigError as exc:
        print(f"greentune: {one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - MLflow unreachable: one line, nothing written
        print(f"greentune: could not read MLflow at {redact(uri)}: {one_line(exc)[:300]}", file=sys.stderr)
        return 2
    kept = [name for name in ("study.json", "ledger.json", "searcher.json", "trials.csv")
            if name not in written and (out / name).exists()]
    print(f"restored {', '.join(written) or 'nothing'} into {out} from MLflow run {run_id}"
          + (f"; kept the local {', '.join(kept)}" if kept else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
