"""``greentune carbon now`` and ``greentune carbon plan``: the provider and the planner
from the command line, with the same settings (and the same validation) as a study's
``carbon:`` section."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

from tuner.config import CarbonSettings, parse_duration


def add_commands(commands: Any) -> None:
    """Register ``carbon now`` and ``carbon plan`` on the top-level subparsers."""
    carbon = commands.add_parser("carbon", help="grid carbon intensity: now, and when to run")
    sub = carbon.add_subparsers(dest="carbon_command", required=True)
    now = sub.add_parser("now", help="the current intensity from a provider")
    _provider_options(now)
    plan = sub.add_parser("plan", help="the best start window for some work before a deadline")
    _provider_options(plan)
    plan.add_argument("--duration", required=True, help="how long the work runs, e.g. 2h")
    plan.add_argument("--deadline", required=True, help="finish within this from now, e.g. 24h")
    plan.add_argument(
        "--min-saving",
        type=float,
        default=0.0,
        help="wait only if it saves at least this fraction (default 0)",
    )
    plan.add_argument(
        "--forecast",
        choices=["provider", "history"],
        default="provider",
        help="provider: its forecast (a CSV's recorded values); history: fitted on its past",
    )
    plan.add_argument(
        "--confidence",
        type=float,
        help="--forecast history: wait only for a saving that clears the forecast's past "
        "error with this confidence (default: the carbon.confidence default)",
    )


def _provider_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--provider",
        default="static",
        choices=["static", "csv", "ukci", "electricitymaps", "watttime"],
    )
    parser.add_argument("--zone", help="static / electricitymaps zone, e.g. DE")
    parser.add_argument("--region", help="ukci region id (1-17) or watttime region")
    parser.add_argument("--csv-path", help="csv: the trace file")
    parser.add_argument("--csv-timezone", default="UTC", help="csv: zone of naive timestamps")
    parser.add_argument("--g-per-kwh", type=float, help="static: override the table")
    parser.add_argument("--lifecycle", action="store_true", help="lifecycle (LCA) factors")
    parser.add_argument("--base-url", help="web providers: another endpoint (a mirror, a test)")
    parser.add_argument("--at", help="plan/read as if now were this UTC time (CSV replays)")


def run(args: argparse.Namespace) -> int:
    """Run a ``carbon`` subcommand; exit code 2 for bad input, naming the option."""
    from pydantic import ValidationError

    from tuner.carbon.registry import build_provider

    options = {
        "provider": args.provider,
        "zone": args.zone,
        "region": args.region,
        "csv_path": args.csv_path,
        "csv_timezone": args.csv_timezone,
        "g_per_kwh": args.g_per_kwh,
        "lifecycle": args.lifecycle,
        "base_url": args.base_url,
    }
    if getattr(args, "confidence", None) is not None:
        options["confidence"] = args.confidence
    try:
        if args.carbon_command == "plan":  # bad durations first: they need no provider
            parse_duration(args.duration, "--duration")
            parse_duration(args.deadline, "--deadline")
        settings = CarbonSettings(**{k: v for k, v in options.items() if v is not None})
        now = _now(args.at)
        provider = build_provider(settings, clock=lambda: now)
        if args.carbon_command == "now":
            return _now_command(provider)
        return _plan_command(provider, now, args, settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        message = message.removeprefix(f"carbon.{field}: ")
        where = f"--{field.replace('_', '-')}: " if field else ""
        print(f"greentune carbon: {where}{message}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"greentune carbon: {exc}", file=sys.stderr)
        return 2


def _now(at: str | None) -> datetime:
    if at is None:
        return datetime.now(timezone.utc)
    try:
        when = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--at: '{at}' is not an ISO time such as 2020-06-01T09:00") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _now_command(provider: Any) -> int:
    reading = provider.current()
    print(
        f"{reading.g_per_kwh:.1f} gCO2/kWh ({reading.signal}) at {reading.time:%Y-%m-%d %H:%M} UTC"
    )
    print(f"source: {reading.source}")
    if reading.fallback_reason:
        print(f"fallback: {reading.fallback_reason}")
    return 0


def _plan_command(provider: Any, now: datetime, args: argparse.Namespace,
                  settings: CarbonSettings) -> int:
    import pandas as pd

    from tuner.carbon.schedule import SchedulePolicy, plan_start
    from tuner.carbon.series import last_step

    duration = timedelta(seconds=parse_duration(args.duration, "--duration"))
    deadline = now + timedelta(seconds=parse_duration(args.deadline, "--deadline"))
    if not 0.0 <= args.min_saving < 1.0:
        raise ValueError(f"--min-saving: a fraction in [0, 1), got {args.min_saving}")
    risk = None
    policy = SchedulePolicy("flexible-start", min_saving=args.min_saving)
    if args.forecast == "history":
        from tuner.carbon.forecast import HistoryForecast

        provider = HistoryForecast(provider)
        policy = SchedulePolicy("flexible-start", min_saving=args.min_saving,
                                confidence=settings.confidence)
        risk = provider.saving_risk(now, deadline, duration, settings.confidence)
    series = provider.forecast(now, deadline)
    plan = plan_start(series, now, duration, deadline, policy, risk)
    wait = plan.start - now
    print(
        f"start: {plan.start:%Y-%m-%d %H:%M} UTC (in {wait.total_seconds() / 3600:.1f} h), "
        f"end by {plan.start + duration:%Y-%m-%d %H:%M} UTC"
    )
    print(
        f"expected: {plan.expected_g_per_kwh:.1f} gCO2/kWh over the {args.duration} of work; "
        f"starting now: {plan.now_g_per_kwh:.1f}"
    )
    print(f"saving against starting now: {plan.saving_fraction:.1%}")
    print(f"why: {plan.reason}")
    print(
        f"forecast: {series.source}"
        + (f" (fallback: {series.fallback_reason})" if series.fallback_reason else "")
    )
    values = series.values.dropna()
    if len(values):
        seen_until = values.index[-1] + last_step(values)
        if seen_until < pd.Timestamp(deadline):
            seen = max((seen_until - pd.Timestamp(now)).total_seconds(), 0.0) / 3600
            print(f"note: the forecast covers {seen:.1f} h of the {args.deadline} to the "
                  "deadline; windows after its end were not considered")
    return 0
