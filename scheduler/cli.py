"""The command line: thin commands over the services.

Global options come before the subcommand. Errors a user can cause are
printed as one sentence on stderr with a non-zero exit code, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path

from scheduler.clock import FixedClock, SystemClock, parse_now
from scheduler.config import Config, load_config
from scheduler.errors import UserError
from scheduler.planning.sessions import Planner


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparring", description="Plans and runs the sparring forums of a municipality."
    )
    parser.add_argument("--config", default="config/sparring.toml", help="configuration file")
    parser.add_argument("--data-dir", default=None, help="data directory (default ./var)")
    parser.add_argument("--now", default=None, help="act as if it were this ISO date-time")
    parser.add_argument(
        "--demo", action="store_true", help="create an encryption key in the data directory"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check-config", help="validate the configuration and report")
    check.set_defaults(run=cmd_check_config)

    plan = commands.add_parser("plan", help="list the sessions in a date range")
    plan.add_argument("--from", dest="first", type=_date, required=True)
    plan.add_argument("--to", dest="last", type=_date, required=True)
    plan.add_argument("--series", default=None)
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(run=cmd_plan)
    return parser


class Context:
    """What every command needs: configuration, clock, data directory."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.config: Config = load_config(args.config)
        tz = self.config.tz
        now = args.now or os.environ.get("SPARRING_NOW")
        self.clock = FixedClock(parse_now(now, tz)) if now else SystemClock(tz)
        self.data_dir = Path(args.data_dir or self.config.service.data_dir)

    def planner(self) -> Planner:
        return Planner(self.config.all_series(), self.config.closed_days(), self.config.tz)


def cmd_check_config(ctx: Context) -> int:
    config = ctx.config
    print(f"{config.source}: OK")
    for series in config.all_series():
        ages = f"{series.min_age}-{series.max_age}" if series.max_age is not None else f"{series.min_age}+"
        print(
            f"  series {series.id}: {series.cadence.value}, ages {ages}, "
            f"{series.capacity} slots of {series.slot_length.seconds // 60} min"
        )
    return 0


def cmd_plan(ctx: Context) -> int:
    args = ctx.args
    if args.last < args.first:
        raise UserError(f"plan: --to {args.last} lies before --from {args.first}.")
    planner = ctx.planner()
    if args.series is not None and args.series not in {s.id for s in planner.series}:
        known = ", ".join(s.id for s in planner.series)
        raise UserError(f"plan: unknown series {args.series!r}; configured: {known}.")
    sessions = planner.sessions(args.first, args.last, args.series)
    if args.json:
        rows = [
            {
                "series": s.series_id,
                "start": s.start.isoformat(),
                "end": s.end.isoformat(),
                "deadline": s.deadline.isoformat(),
                "capacity": s.capacity,
                "status": s.status.value,
                "note": s.note,
            }
            for s in sessions
        ]
        json.dump(rows, sys.stdout, ensure_ascii=False, indent=1)
        print()
        return 0
    print(f"{'series':<10} {'start':<17} {'end':<6} {'deadline':<17} {'slots':>5}  status")
    for s in sessions:
        note = f"  ({s.note})" if s.note else ""
        print(
            f"{s.series_id:<10} {s.start:%Y-%m-%d %H:%M} {s.end:%H:%M}  "
            f"{s.deadline:%Y-%m-%d %H:%M} {s.capacity:>5}  {s.status.value}{note}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(Context(args))
    except UserError as exc:
        print(f"sparring: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
