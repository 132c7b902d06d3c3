"""``greentune meter -- CMD ARGS...``: the energy of any command, the way ``perf stat`` does.

The command runs as a child of this process, inside one energy window of the same
fallback chain trials use, and its exit code is passed on. The breakdown goes to
stderr (stdout stays the command's); ``--json`` prints the record on stdout, or into
``--output``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import subprocess
import sys
from typing import Any

from tuner.energy.base import J_PER_KWH, Measurement


def add_meter_command(commands: Any) -> None:
    """Register ``meter`` on the ``greentune`` sub-command parser."""
    meter = commands.add_parser(
        "meter",
        help="measure the energy of a command",
        description="Run CMD and print its energy per component (cpu, dram, gpu) with source and uncertainty.",
    )
    meter.add_argument("--json", action="store_true", help="print the measurement as JSON")
    meter.add_argument("-o", "--output", help="write the JSON measurement to this file instead of stdout")
    meter.add_argument("--watts-per-core", type=float, help="for the CPU-time estimate (default: TDP table)")
    meter.add_argument("--sample-interval", type=float, help="sampling period in seconds (default 0.1)")
    meter.add_argument("--whole-machine", action="store_true",
                       help="report whole-machine RAPL energy instead of the command's CPU-time share")
    meter.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command and its arguments")
    meter.set_defaults(handler=run_meter)


def run_meter(args: argparse.Namespace) -> int:
    """Measure ``args.cmd``; return its exit code (2 for bad input, before anything runs)."""
    from pydantic import ValidationError

    from tuner.config import EnergySettings
    from tuner.energy.factory import make_meter

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        return _fail("no command given; usage: greentune meter [--json] -- CMD ARGS...")
    if shutil.which(cmd[0]) is None:
        return _fail(f"command '{cmd[0]}' not found on PATH")
    options = {"watts_per_core": args.watts_per_core, "sample_interval_s": args.sample_interval}
    try:
        settings = EnergySettings(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        field = exc.errors()[0]["loc"][0]
        flag = {"watts_per_core": "--watts-per-core", "sample_interval_s": "--sample-interval"}[str(field)]
        return _fail(f"{flag}: {exc.errors()[0]['msg']}")
    meter = make_meter(settings, attribute=not args.whole_machine)
    meter.begin_window("command")
    try:
        returncode = subprocess.call(cmd)
    except KeyboardInterrupt:
        returncode = 130
    finally:
        measured = meter.end_window("command")
        meter.close()
    print(breakdown_table(measured, cmd, returncode), file=sys.stderr)
    if args.json or args.output:
        record = {"command": cmd, "returncode": returncode, **measured.as_record()}
        text = json.dumps({k: _nan_as_null(v) for k, v in record.items()}, indent=2)
        if args.output:
            with open(args.output, "w") as handle:
                handle.write(text + "\n")
        else:
            print(text)
    return returncode


def _nan_as_null(value: Any) -> Any:
    """JSON has no NaN: an unknown uncertainty is written as null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def breakdown_table(measured: Measurement, cmd: list[str], returncode: int) -> str:
    """A ``perf stat``-like table: one row per component, the total, then fallback notes."""
    lines = [
        f"\n Energy of '{shlex.join(cmd)}' (exit {returncode}, {measured.duration_s:.2f} s, "
        f"{measured.cpu_time_s or 0.0:.2f} CPU s):\n",
        f" {'component':<10}{'kWh':>14}{'joules':>12}{'+/-':>7}  source",
    ]
    for reading in measured.components:
        if reading.present:
            joules = reading.energy_kwh * J_PER_KWH  # type: ignore[operator]
            lines.append(f" {reading.component:<10}{reading.energy_kwh:>14.4e}{joules:>12.2f}"
                         f"{_percent(reading.relative_uncertainty):>7}  {reading.source}")
        else:
            lines.append(f" {reading.component:<10}{'-':>14}{'-':>12}{'-':>7}  absent")
    lines.append(f" {'total':<10}{measured.energy_kwh:>14.4e}{measured.energy_kwh * J_PER_KWH:>12.2f}"
                 f"{_percent(measured.relative_uncertainty):>7}  {measured.source}")
    if measured.cpu_share is not None:
        lines.append(f"\n RAPL energy attributed by CPU-time share: {measured.cpu_share:.1%} of the machine")
    notes = [(r.component, note) for r in measured.components for note in (*r.reasons, *r.flags)]
    if notes:
        lines.append("")
        lines += [f" {component}: {note}" for component, note in notes]
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "?"
    return f"{value:.0%}"


def _fail(message: str) -> int:
    print(f"greentune meter: {message}", file=sys.stderr)
    return 2
