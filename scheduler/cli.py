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
from datetime import date, timedelta
from pathlib import Path

from scheduler.clock import FixedClock, SystemClock, parse_now
from scheduler.config import Config, load_config
from scheduler.errors import UserError
from scheduler.ports import PermanentError, TransientError
from scheduler.planning.sessions import Planner


def _minutes(text: str) -> int:
    if not text.isdigit() or not 5 <= int(text) <= 480:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; give whole minutes from 5 to 480")
    return int(text)


def _addresses(text: str) -> tuple[str, ...]:
    found = tuple(a.strip().lower() for a in text.split(",") if a.strip())
    bad = [a for a in found if a.count("@") != 1 or "." not in a.partition("@")[2]]
    if bad or not found:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of mail addresses")
    return found


# A session still counts as "next" until it has ended.
_SESSION_GRACE = timedelta(hours=2)


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

    keygen = commands.add_parser("keygen", help="print a new encryption key")
    keygen.set_defaults(run=cmd_keygen, needs_config=False)

    ingest = commands.add_parser("ingest", help="take in agenda items by mail")
    ingest.add_argument("--eml", nargs="+", metavar="PATH", help="process these files instead of the source")
    ingest.add_argument("--json", action="store_true", help="one JSON object per mail, one per line")
    ingest.set_defaults(run=cmd_ingest)

    agenda = commands.add_parser("agenda", help="print a session's agenda as it stands")
    agenda.add_argument("--series", required=True)
    which = agenda.add_mutually_exclusive_group()
    which.add_argument("--session", type=_date, help="the session's date")
    which.add_argument("--next", action="store_true", help="the next session (default)")
    agenda.add_argument("--format", choices=("text", "html", "json"), default="text")
    agenda.set_defaults(run=cmd_agenda)

    outbox = commands.add_parser("outbox", help="show or retry queued mails and calendar writes")
    outbox.add_argument("--failed", action="store_true", help="only failed entries")
    outbox.add_argument("--retry", metavar="ID", nargs="?", const="all", help="queue failed entries again")
    outbox.add_argument("--send", action="store_true", help="deliver what is due now")
    outbox.set_defaults(run=cmd_outbox)

    publish = commands.add_parser("publish", help="publish the sessions in the calendars")
    publish.set_defaults(run=cmd_publish)

    run = commands.add_parser("run", help="start the service (the daemon)")
    run.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.add_argument("--once", action="store_true",
                     help="do what is due now (missed agendas, the inbox, the outbox) and exit")
    run.set_defaults(run=cmd_run)

    status = commands.add_parser("status", help="next jobs, last intake, outbox backlog and failures")
    status.set_defaults(run=cmd_status)

    simulate = commands.add_parser("simulate", help="run the whole cycle in simulated time")
    simulate.add_argument("--from", dest="first", type=_date, required=True)
    simulate.add_argument("--to", dest="last", type=_date, required=True)
    simulate.set_defaults(run=cmd_simulate)

    purge = commands.add_parser("purge", help="delete what is past its retention now")
    purge.set_defaults(run=cmd_purge)

    book = commands.add_parser("book", help="find the best common slot and book a meeting")
    book.add_argument("kind", choices=("cooperation", "network", "coordination", "acute"))
    book.add_argument("--from", dest="first", type=_date, required=True)
    book.add_argument("--to", dest="last", type=_date, required=True)
    book.add_argument("--duration", type=_minutes, required=True, metavar="MINUTES")
    book.add_argument("--required", type=_addresses, required=True, metavar="ADDR[,ADDR...]")
    book.add_argument("--optional", type=_addresses, default=(), metavar="ADDR[,ADDR...]")
    book.add_argument("--external", type=_addresses, default=(), metavar="ADDR[,ADDR...]",
                      help="invited only, not looked up (the citizen's network)")
    book.add_argument("--title", default=None)
    book.add_argument("--joint", action="store_true",
                      help="coordination: also book the joint conversation with the citizen")
    book.add_argument("--dry-run", action="store_true", help="only find the slot")
    book.add_argument("--json", action="store_true")
    book.set_defaults(run=cmd_book)
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
        self._app = None

    def planner(self) -> Planner:
        return Planner(self.config.all_series(), self.config.closed_days(), self.config.tz)

    def app(self):
        """The services' context; needs the key, so only commands that touch data ask."""
        if self._app is None:
            from scheduler.wiring import make_app

            announce = lambda text: print(text, file=sys.stderr)  # noqa: E731
            self._app = make_app(self.config, self.clock, self.data_dir, demo=self.args.demo,
                                 announce=announce)
        return self._app

    def dispatcher(self):
        from scheduler.services.dispatch import Dispatcher
        from scheduler.wiring import make_calendar, make_transport

        app = self.app()
        return Dispatcher(app, make_transport(self.config, self.data_dir, self.clock),
                          make_calendar(self.config, self.data_dir))


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


def cmd_keygen(ctx: Context | None) -> int:
    from scheduler.store.keys import new_key

    print(new_key())
    return 0


def cmd_ingest(ctx: Context) -> int:
    from scheduler.ports import IncomingMail
    from scheduler.services.intake import Intake

    app = ctx.app()
    intake = Intake(app)
    if ctx.args.eml:
        outcomes = [intake.process(IncomingMail(str(p), _read(p), app.now())) for p in ctx.args.eml]
    else:
        from scheduler.wiring import make_source

        source = make_source(ctx.config, ctx.data_dir)
        try:
            outcomes = intake.run(source)
        finally:
            source.close()
    ctx.dispatcher().run_once()
    for outcome in outcomes:
        if ctx.args.json:
            print(json.dumps(outcome.as_json(), ensure_ascii=False))
        else:
            where = f" {outcome.series} {outcome.session_start:%Y-%m-%d %H:%M}" if outcome.session_start else ""
            why = f": {outcome.reason}" if outcome.reason else ""
            print(f"{outcome.outcome:<11} {outcome.message_id}{where}{why}")
    return 0


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"ingest: cannot read {path} ({exc.strerror}).") from None


def cmd_agenda(ctx: Context) -> int:
    from scheduler.services.agenda import build_agenda, render_agenda

    app = ctx.app()
    if ctx.args.series not in app.series:
        raise UserError(f"agenda: unknown series {ctx.args.series!r}; configured: {', '.join(app.series)}.")
    session = _pick_session(app, ctx.args.series, ctx.args.session)
    full = ctx.config.agenda.cpr_display == "full"
    with app.transaction() as repo:
        agenda = build_agenda(repo, app, session, full_cpr=full)
    sys.stdout.write(render_agenda(agenda, ctx.args.format, app.language, app.forum_name))
    return 0


def _pick_session(app, series_id: str, day: date | None):
    if day is None:
        session = next(app.planner.upcoming(series_id, app.now() - _SESSION_GRACE), None)
        if session is None:
            raise UserError(f"agenda: series {series_id!r} has no coming session.")
        return session
    found = app.planner.sessions(day, day, series_id)
    if not found:
        raise UserError(f"agenda: series {series_id!r} has no session on {day}.")
    return found[0]


def cmd_outbox(ctx: Context) -> int:
    from scheduler.services.dispatch import retry_failed
    from scheduler.services.status import outbox_rows

    app = ctx.app()
    if ctx.args.retry:
        count = retry_failed(app, None if ctx.args.retry == "all" else int(ctx.args.retry))
        print(f"{count} entr{'y' if count == 1 else 'ies'} queued again")
    if ctx.args.send:
        report = ctx.dispatcher().run_once()
        print(f"sent {report.sent}, retrying {report.retried}, failed {report.failed}")
    for row in outbox_rows(app, failed_only=ctx.args.failed):
        print(row)
    return 0


def cmd_publish(ctx: Context) -> int:
    from scheduler.services.publishing import publish_horizon

    app = ctx.app()
    publish_horizon(app)
    report = ctx.dispatcher().run_once(limit=5000)
    print(f"published; sent {report.sent}, retrying {report.retried}, failed {report.failed}")
    return 0


def cmd_run(ctx: Context) -> int:
    from scheduler.daemon import Daemon
    from scheduler.logs import setup_logging

    setup_logging(ctx.args.log_level)
    daemon = Daemon(ctx.app())
    daemon.install_signals()
    return daemon.run_once() if ctx.args.once else daemon.run()


def cmd_status(ctx: Context) -> int:
    from scheduler.services.status import status_lines

    for line in status_lines(ctx.app()):
        print(line)
    return 0


def cmd_simulate(ctx: Context) -> int:
    from scheduler.services.simulate import simulate

    if ctx.args.last < ctx.args.first:
        raise UserError(f"simulate: --to {ctx.args.last} lies before --from {ctx.args.first}.")
    if not isinstance(ctx.clock, FixedClock):
        ctx.clock = FixedClock(parse_now(f"{ctx.args.first}T00:00", ctx.config.tz))
    app = ctx.app()
    summary = simulate(app, ctx.dispatcher(), ctx.args.first, ctx.args.last)
    print(summary.table(list(app.series)))
    return 0


def cmd_purge(ctx: Context) -> int:
    from scheduler.services.retention import purge

    report = purge(ctx.app())
    print(f"deleted items {report.items}, mail records {report.mails}, "
          f"outbox entries {report.outbox}, files {report.files}")
    return 0


def cmd_book(ctx: Context) -> int:
    from scheduler.services.booking import Booker, BookingRequest
    from scheduler.wiring import make_calendar

    args = ctx.args
    if args.last < args.first:
        raise UserError(f"book: --to {args.last} lies before --from {args.first}.")
    app = ctx.app()
    calendar = make_calendar(ctx.config, ctx.data_dir)
    request = BookingRequest(kind=args.kind, first=args.first, last=args.last,
                             duration=timedelta(minutes=args.duration), required=args.required,
                             optional=args.optional, external=args.external, title=args.title)
    result = Booker(app, calendar).book(request, dry_run=args.dry_run, joint=args.joint)
    if not args.dry_run and result.meeting is not None:
        ctx.dispatcher().run_once()
    if args.json:
        print(json.dumps(result.as_json(), ensure_ascii=False))
    elif result.candidate is None:
        print(result.reason)
    else:
        verb = "found" if args.dry_run else "booked"
        print(f"{verb} {result.candidate.start:%Y-%m-%d %H:%M}-{result.candidate.end:%H:%M}; "
              f"optional free {result.candidate.optional_free}; invited {', '.join(result.invited)}")
        for warning in result.warnings:
            print(f"warning: {warning}")
        if result.joint is not None:
            print(f"joint conversation {'booked' if args.joint and not args.dry_run else 'offered'}: "
                  f"{result.joint.start:%Y-%m-%d %H:%M}-{result.joint.end:%H:%M}")
    return 0 if result.candidate is not None else 3


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "needs_config", True) is False:
            return args.run(None)
        return args.run(Context(args))
    except UserError as exc:
        print(f"sparring: {exc}", file=sys.stderr)
        return exc.exit_code
    except (TransientError, PermanentError) as exc:
        # Adapters' messages name the server and the failure, never content.
        print(f"sparring: {exc}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
