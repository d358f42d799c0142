"""``sparring statistics``: the forum's statistics of a period, as the web page shows them."""

from __future__ import annotations

import sys

from scheduler.errors import UserError


class PeriodError(UserError):
    exit_code = 2


def add_statistics_parser(commands) -> None:
    stats = commands.add_parser("statistics", help="the forum's statistics of a period (counts under 5 hidden)")
    stats.add_argument("--period", help="2027-Q1, 2027-03 or 2027 (default: the quarter holding --now)")
    stats.add_argument("--series", help="one series (default: all)")
    stats.add_argument("--csv", action="store_true", help="the CSV the web page offers for download")
    stats.add_argument("--lang", choices=("da", "en"), default="da")
    stats.set_defaults(run=cmd_statistics)


def cmd_statistics(ctx) -> int:
    from scheduler.planning.statistics import Period
    from scheduler.services import statistics

    args = ctx.args
    try:
        period = Period.parse(args.period) if args.period else None
    except ValueError as exc:
        raise PeriodError(str(exc)) from None
    if args.series and args.series not in {s.id for s in ctx.config.series}:
        raise PeriodError(f"There is no series {args.series!r} in the configuration.")
    app = ctx.app()
    period = period or Period.containing(app.now().date())
    shown = statistics.table(app, period, args.series)
    if args.csv:
        sys.stdout.write(shown.csv(args.lang))
        return 0
    cells = shown.cells(args.lang)
    widths = [max(len(row[n]) for row in cells) for n in range(len(cells[0]))]
    print(f"{period.label} ({period.first} - {period.last})" + (f", {args.series}" if args.series else ""))
    for row in cells:
        print("  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:]))]).rstrip())
    return 0
