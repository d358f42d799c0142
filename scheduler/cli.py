"""The command line: thin commands over the services.

Global options come before the subcommand. Errors a user can cause are
printed as one sentence on stderr with a non-zero exit code, never a
traceback; so is any other error, by its class and place only (exit 70).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path
from types import SimpleNamespace

from scheduler.clock import RunningClock, SystemClock, parse_now
from scheduler.commands import (
    cmd_agenda,
    cmd_audit,
    cmd_erase,
    cmd_record_of_processing,
    cmd_book,
    cmd_decide,
    cmd_check_config,
    cmd_check_connection,
    cmd_ingest,
    cmd_keygen,
    cmd_mail_show,
    cmd_outbox,
    cmd_plan,
    cmd_publish,
    cmd_purge,
    cmd_run,
    cmd_serve,
    cmd_simulate,
    cmd_status,
    cmd_web_passwd,
)
from scheduler.casecommands import add_case_parser
from scheduler.statcommands import add_statistics_parser
from scheduler.config import Config, load_config
from scheduler.errors import UserError
from scheduler.faults import describe
from scheduler.planning.sessions import Planner
from scheduler.ports import PermanentError, TransientError


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

    connection = commands.add_parser(
        "check-connection", help="try each configured server once (read-only) and report one line per backend")
    connection.set_defaults(run=cmd_check_connection)

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

    serve = commands.add_parser("serve", help="serve the read-only overview and statistics pages")
    serve.add_argument("--listen", default=None, metavar="HOST:PORT", help="default: [web] listen")
    serve.set_defaults(run=cmd_serve)

    passwd = commands.add_parser("web-passwd", help="print NAME:hash for [web] users_file (password on stdin)")
    passwd.add_argument("name", metavar="NAME")
    passwd.set_defaults(run=cmd_web_passwd, needs_config=False)

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
    _decisions(commands)
    _data_protection(commands)
    add_case_parser(commands, _date)
    add_statistics_parser(commands)

    mail = commands.add_parser("mail", help="read a settled mail kept encrypted in the data directory")
    mail_commands = mail.add_subparsers(dest="mail_command", required=True, metavar="ACTION")
    show = mail_commands.add_parser("show", help="decrypt a processed/, rejected/, quarantine/ or ignored/ "
                                                 "mail (*.eml.enc) to standard output")
    show.add_argument("path", metavar="PATH")
    show.set_defaults(run=cmd_mail_show)
    return parser


def _decisions(commands) -> None:
    """The forum's decisions by command, as by reply to the agenda (issue 15)."""
    decide = commands.add_parser("decide", help="record the forum's decision on one slot of a session")
    decide.add_argument("--series", required=True)
    decide.add_argument("--session", type=_date, required=True, help="the session's date")
    decide.add_argument("--slot", type=int, required=True, help="the item's number on the agenda")
    decide.add_argument("--decision", required=True, choices=("start", "no-basis", "postponed", "referred"))
    decide.add_argument("--receiver", default=None, metavar="ADDR",
                        help="start: the receiving caseworker (default: the series' receiving address); "
                             "referred: to whom")
    decide.add_argument("--note", default=None, help="free text told to the caseworker")
    decide.add_argument("--json", action="store_true")
    decide.set_defaults(run=cmd_decide)


def _data_protection(commands) -> None:
    """The commands a data protection officer asks for (issue 13)."""
    audit = commands.add_parser("audit", help="verify the audit trail, or show all about one citizen")
    which = audit.add_mutually_exclusive_group(required=True)
    which.add_argument("--verify", action="store_true", help="check the trail's hash chain")
    which.add_argument("--cpr", metavar="CPR", help="the citizen's trail rows and current data (art. 15)")
    audit.add_argument("--json", action="store_true", help="JSON lines")
    audit.set_defaults(run=cmd_audit)

    erase = commands.add_parser("erase", help="erase everything about one citizen now (art. 17)")
    erase.add_argument("--cpr", metavar="CPR", required=True)
    erase.add_argument("--json", action="store_true")
    erase.set_defaults(run=cmd_erase)

    record = commands.add_parser("record-of-processing",
                                 help="print the record of processing (art. 30), in Danish")
    record.add_argument("--language", choices=("da", "en"), default="da")
    record.set_defaults(run=cmd_record_of_processing)


class Context:
    """What every command needs: configuration, clock, data directory."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.config: Config = load_config(args.config)
        tz = self.config.tz
        now = args.now or os.environ.get("SPARRING_NOW")
        # --now sets where a running clock starts: deadlines after it still come.
        self.clock = RunningClock(parse_now(now, tz)) if now else SystemClock(tz)
        self.data_dir = Path(args.data_dir or self.config.service.data_dir)
        self._app = None

    def planner(self) -> Planner:
        """The configured series' sessions, with the extra sessions stored in the database."""
        from scheduler.services.backlog import stored_extras

        planner = Planner(self.config.all_series(), self.config.closed_days(), self.config.tz)
        return planner.with_extras(stored_extras(self.config, self.data_dir))

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "needs_config", True) is False:
            return args.run(SimpleNamespace(args=args))
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
    except Exception as exc:  # a bug: its text and traceback may quote a mail, so neither is shown
        print(f"sparring: unexpected error {describe(exc)}; nothing of the input is shown; "
              "please report the error and its place.", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
