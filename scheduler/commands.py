"""The commands behind ``sparring``: each takes the ``Context`` and returns
an exit code. Thin: they parse nothing and decide nothing, they call the
services and print. Imports of heavy modules stay inside the commands so
that ``sparring plan`` starts fast.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

from scheduler.clock import FixedClock, RunningClock, parse_now
from scheduler.errors import UserError
from scheduler.localtime import local, people_span, people_time

def _check_range(command: str, first: date, last: date) -> None:
    if last < first:
        raise UserError(f"{command}: --to {last} lies before --from {first}.")


def _check_booking(ctx) -> None:
    """The bounds a meeting request by mail has (scheduler.mail.requests), for ``book`` too."""
    from scheduler.mail.requests import MAX_AHEAD, period_allowed

    args, today = ctx.args, ctx.clock.now().astimezone(ctx.config.tz).date()
    if not period_allowed(args.first, args.last, today):
        raise UserError(f"book: the period {args.first} to {args.last} must end no earlier than today ({today}) "
                        f"and at most {MAX_AHEAD} days ahead.")
    cap = ctx.config.booking.max_externals
    if len(args.external) > cap:
        raise UserError(f"book: --external names {len(args.external)} people; at most {cap} "
                        f"(booking.max_externals) may be invited.")


# A session still counts as "next" until it has ended.
_SESSION_GRACE = timedelta(hours=2)


def cmd_check_config(ctx) -> int:
    config = ctx.config
    print(f"{config.source}: OK")
    for series in config.all_series():
        ages = f"{series.min_age}-{series.max_age}" if series.max_age is not None else f"{series.min_age}+"
        print(
            f"  series {series.id}: {series.cadence.value}, ages {ages}, "
            f"{series.capacity} slots of {series.slot_length.seconds // 60} min"
        )
    return 0


def cmd_check_connection(ctx) -> int:
    """One line per backend the configuration selects; 0 only if all are OK."""
    from scheduler.ports import PermanentError, TransientError
    from scheduler.wiring import connection_checks

    failed = 0
    for label, check in connection_checks(ctx.config, ctx.data_dir):
        try:
            print(f"{label}: OK ({check()})")
        except (UserError, TransientError, PermanentError) as exc:
            failed += 1
            print(f"{label}: {exc}")
        except Exception as exc:  # noqa: BLE001 - one line per backend, never a traceback
            failed += 1
            print(f"{label}: failed unexpectedly ({type(exc).__name__}).")
    return 4 if failed else 0


def cmd_plan(ctx) -> int:
    args = ctx.args
    _check_range("plan", args.first, args.last)
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
    tz = ctx.config.tz
    print(f"{'series':<10} {'start':<17} {'end':<6} {'deadline':<17} {'slots':>5}  status")
    for s in sessions:
        note = f"  ({s.note})" if s.note else ""
        print(
            f"{s.series_id:<10} {people_time(s.start, tz)} {local(s.end, tz):%H:%M}  "
            f"{people_time(s.deadline, tz)} {s.capacity:>5}  {s.status.value}{note}"
        )
    return 0


def cmd_keygen(ctx) -> int:
    from scheduler.store.keys import new_key

    print(new_key())
    return 0


def cmd_ingest(ctx) -> int:
    from scheduler.ports import IncomingMail
    from scheduler.services.intake import Intake

    app = ctx.app()
    intake = Intake(app)
    if ctx.args.eml:
        outcomes = [intake.process(IncomingMail(str(p), _read(p), app.now())) for p in ctx.args.eml]
    else:
        from scheduler.wiring import make_source

        source = make_source(ctx.config, ctx.data_dir, app, cipher=app.cipher, clock=ctx.clock)
        intake.start()
        try:
            outcomes = intake.run(source)
        finally:
            source.close()
            intake.close()
    ctx.dispatcher().run_once()
    for outcome in outcomes:
        if ctx.args.json:
            print(json.dumps(outcome.as_json(), ensure_ascii=False))
        else:
            when = people_time(outcome.session_start, app.tz)
            where = f" {outcome.series} {when}" if outcome.session_start else ""
            why = f": {outcome.reason}" if outcome.reason else ""
            print(f"{outcome.outcome:<11} {outcome.message_id}{where}{why}")
    return 0


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"ingest: cannot read {path} ({exc.strerror}).") from None


def cmd_agenda(ctx) -> int:
    from scheduler.services.agenda import build_agenda, render_agenda

    app = ctx.app()
    if ctx.args.series not in app.series:
        raise UserError(f"agenda: unknown series {ctx.args.series!r}; configured: {', '.join(app.series)}.")
    session = _pick_session(app, ctx.args.series, ctx.args.session)
    full = ctx.config.agenda.cpr_display == "full"
    with app.transaction() as repo:
        agenda = build_agenda(repo, app, session, full_cpr=full)
        _audit_viewed(repo, agenda)
    sys.stdout.write(render_agenda(agenda, ctx.args.format, app.language, app.forum_name))
    return 0


def _audit_viewed(repo, agenda) -> None:
    """An agenda printed holds every item in it: one trail row per citizen."""
    from scheduler.services.access import actor

    for subject, series, start in repo.about_items(line.item_id for line in agenda.lines):
        repo.audit("agenda-viewed", actor=actor(), subject=subject, series=series,
                   session_start=agenda.session.start)


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


def cmd_outbox(ctx) -> int:
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


def cmd_publish(ctx) -> int:
    from scheduler.services.publishing import publish_horizon

    app = ctx.app()
    publish_horizon(app)
    report = ctx.dispatcher().run_once(limit=5000)
    print(f"published; sent {report.sent}, retrying {report.retried}, failed {report.failed}")
    return 0


def cmd_run(ctx) -> int:
    from scheduler.daemon import Daemon
    from scheduler.logs import setup_logging
    from scheduler.services import usage

    usage.claim(ctx.app(), "run")
    setup_logging(ctx.args.log_level)
    daemon = Daemon(ctx.app())
    daemon.install_signals()
    if ctx.args.once:
        return daemon.run_once()
    if not ctx.config.web.enabled:
        return daemon.run()
    from scheduler.web.server import InThread

    web = InThread(ctx.app(), daemon).start()  # stopped with the daemon (SIGTERM)
    try:
        return daemon.run()
    finally:
        web.stop()


def cmd_serve(ctx) -> int:
    """The pages against the database only: no daemon in this process."""
    from scheduler.logs import setup_logging
    from scheduler.web.server import serve

    setup_logging("INFO")
    return serve(ctx.app(), ctx.args.listen or ctx.config.web.listen)


def cmd_web_passwd(ctx) -> int:
    """NAME:hash for [web] users_file; the password from stdin (asked for on a terminal)."""
    import getpass

    from scheduler.web.auth import hash_password

    name = ctx.args.name
    if not name or ":" in name or name != name.strip():
        raise UserError(f"web-passwd: {name!r} is not a user name; use one without ':' or blanks around it.")
    password = getpass.getpass(f"password for {name}: ") if sys.stdin.isatty() else sys.stdin.readline()
    password = password.rstrip("\r\n")
    if not password:
        raise UserError("web-passwd: no password was given on standard input.")
    print(f"{name}:{hash_password(password)}")
    return 0


def cmd_status(ctx) -> int:
    from scheduler.services.status import status_lines

    for line in status_lines(ctx.app()):
        print(line)
    return 0


def cmd_simulate(ctx) -> int:
    from scheduler.services.simulate import simulate

    _check_range("simulate", ctx.args.first, ctx.args.last)
    # Simulated time stands still between events: from --now, or the first day.
    start = ctx.clock.start if isinstance(ctx.clock, RunningClock) else parse_now(
        f"{ctx.args.first}T00:00", ctx.config.tz)
    ctx.clock = FixedClock(start)
    from scheduler.services import usage
    from scheduler.services.dispatch import Dispatcher
    from scheduler.wiring import make_calendar, make_transport

    app = ctx.app()
    usage.claim(app, "simulate")
    # A rehearsal: the embedded default's files need not survive a power cut.
    calendar = make_calendar(ctx.config, ctx.data_dir, durable=False)
    app.calendar_factory = lambda: calendar
    dispatcher = Dispatcher(app, make_transport(ctx.config, ctx.data_dir, ctx.clock, durable=False), calendar,
                            durable=False)
    from scheduler.mail.folder import FolderSource

    folders = FolderSource(ctx.data_dir / "inbox", cipher=app.cipher, durable=False)  # a rehearsal: no fsync
    summary = simulate(app, dispatcher, ctx.args.first, ctx.args.last, folders)
    print(summary.table(list(app.series)))
    return 0


def cmd_purge(ctx) -> int:
    from scheduler.services.retention import purge

    with _mailbox(ctx, "purge", "the database and the data directory are purged") as source:
        report = purge(ctx.app(), source)  # and the mailbox's settled folders, as the nightly purge does
    print(f"deleted items {report.items}, mail records {report.mails}, "
          f"outbox entries {report.outbox}, files {report.files}, closed cases {report.cases}")
    return 0


_TITLE_PROBLEMS = {
    "control": "holds a line break or another control character",
    "cpr": "holds what looks like a CPR number; a title is shown in every attendee's calendar",
    "empty": "is empty",
}


def _check_title(title: str | None) -> None:
    from scheduler.planning.titles import title_problem

    problem = title_problem(title) if title is not None else None
    if problem:
        raise UserError(f"book: --title {_TITLE_PROBLEMS[problem]}; give a short title without it.")


def cmd_mail_show(ctx) -> int:
    """An administrator's look at a settled mail: the raw mail on stdout."""
    import os

    from scheduler.store.crypto import FieldCipher, open_mail
    from scheduler.store.keys import load_key

    path = Path(ctx.args.path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"mail show: cannot read {path} ({exc.strerror}).") from None
    key, _ = load_key(os.environ, ctx.config.service.key_file or None, ctx.data_dir, ctx.args.demo)
    try:
        raw = open_mail(FieldCipher(key), data)
    except UserError as exc:
        raise UserError(f"mail show: {path}: {exc}") from None
    sys.stdout.buffer.write(raw)
    sys.stdout.flush()
    return 0


def cmd_book(ctx) -> int:
    from scheduler.services.booking import Booker, BookingRequest
    from scheduler.wiring import make_calendar

    args = ctx.args
    _check_range("book", args.first, args.last)
    _check_title(args.title)
    _check_booking(ctx)
    app = ctx.app()
    calendar = make_calendar(ctx.config, ctx.data_dir)
    request = BookingRequest(kind=args.kind, first=args.first, last=args.last,
                             duration=timedelta(minutes=args.duration), required=args.required,
                             optional=args.optional, external=args.external, title=args.title)
    result = Booker(app, calendar).book(request, dry_run=args.dry_run, joint=args.joint)
    if not args.dry_run and result.meeting is not None:
        report = ctx.dispatcher().run_once()
        if report.failed:  # never "booked" while its calendar write or invitation failed
            raise UserError(f"book: the meeting was saved, but {report.failed} calendar write(s) or invitation(s) "
                            "failed; see `sparring outbox --failed`.")
    if args.json:
        print(json.dumps(result.as_json(), ensure_ascii=False))
    elif result.candidate is None:
        print(result.reason)
    else:
        verb = "found" if args.dry_run else "booked"
        print(f"{verb} {people_span(result.candidate.start, result.candidate.end, app.tz)}; "
              f"optional free {result.candidate.optional_free}; invited {', '.join(result.invited)}")
        for warning in result.warnings:
            print(f"warning: {warning}")
        if result.joint is not None:
            print(f"joint conversation {'booked' if args.joint and not args.dry_run else 'offered'}: "
                  f"{people_span(result.joint.start, result.joint.end, app.tz)}")
    return 0 if result.candidate is not None else 3


def cmd_decide(ctx) -> int:
    """``sparring decide``: one decision, as a coordinator's reply would make it."""
    from scheduler.mail.decisions import DecisionLine
    from scheduler.reasons import reason
    from scheduler.services.access import actor
    from scheduler.services.decisions import DecisionError, Decisions, find_session

    args = ctx.args
    app = ctx.app()
    if args.series not in app.series:
        raise UserError(f"decide: unknown series {args.series!r}; configured: {', '.join(app.series)}.")
    session = find_session(app, args.series, args.session)
    if session is None:
        raise UserError(f"decide: series {args.series!r} has no session on {args.session}.")
    if args.decision == "referred" and not (args.receiver or args.note):
        raise UserError("decide: --decision referred needs to whom: give --receiver or --note.")
    line = DecisionLine(args.slot, args.decision, receiver=args.receiver if args.decision == "start" else None,
                        referred_to=args.receiver if args.decision == "referred" else None, note=args.note)
    try:
        with app.transaction() as repo:
            decided = Decisions(app, repo).decide(session, line, actor())
    except DecisionError as exc:
        where = f"slot {args.slot} of {args.series} {args.session}"
        raise UserError(f"decide: {where}: {reason(exc.code, 'en', **exc.params)}") from None
    ctx.dispatcher().run_once()
    if args.json:
        print(json.dumps(decided.as_json(), ensure_ascii=False))
    else:
        print(f"{decided.series} {decided.session_start:%Y-%m-%d} slot {decided.slot}: {decided.decision}"
              + (f", case {decided.case}" if decided.case else "")
              + (f"; told {', '.join(decided.notified)}" if decided.notified else ""))
    return 0


def cmd_audit(ctx) -> int:
    """``audit --verify``: check the trail's chain; ``audit --cpr``: a
    citizen's access answer (art. 15), itself audited."""
    app = ctx.app()
    if ctx.args.verify:
        from scheduler.store import audit

        with app.connection() as connection:
            verdict = audit.verify(connection, app.cipher)
        if ctx.args.json:
            print(json.dumps({"ok": verdict.ok, "rows": verdict.rows, "head": list(verdict.head),
                              "problem": verdict.problem or None}))
        elif verdict.ok:
            print(f"audit trail OK: {verdict.rows} rows; head {verdict.head[0]} {verdict.head[1]}")
        else:
            print(f"audit trail broken after {verdict.rows} good rows: {verdict.problem}")
        return 0 if verdict.ok else 1
    from scheduler.services.access import access

    answer = access(app, ctx.args.cpr)
    if ctx.args.json:
        for row in (*answer.trail, *answer.items, *answer.copies):
            print(json.dumps(row, ensure_ascii=False))
        return 0
    for row in answer.trail:
        to = f" til {', '.join(row['recipients'])}" if row["recipients"] else ""
        print(f"{row['at']}  {row['action']:<16} {row['actor']}{to}")
    for item in answer.items:
        print(f"punkt {item['item']}: {item['series']} {item['session_start']} ({item['status']}), "
              f"fra {item['sender']}, CPR {item['cpr']}")
        for line in (*item["health"], *item["social"]):
            print(f"    {line}")
    for copy in answer.copies:
        print(f"kopi: {copy['copy']} til {', '.join(copy['recipients'])} ({copy['status']})")
    return 0


def cmd_erase(ctx) -> int:
    from scheduler.services.access import erase, erase_in_mailbox

    done = erase(ctx.app(), ctx.args.cpr)
    with _mailbox(ctx, "erase", "the database and the data directory are erased") as source:
        erase_in_mailbox(source, done)  # the moved mails in the mailbox's folders, after the database
    if ctx.args.json:
        print(json.dumps(done.as_json()))
    else:
        print(f"erased items {done.items}, outbox copies {done.outbox}, mails {done.mails}, "
              f"calendar cancellations {done.calendar}")
    ctx.dispatcher().run_once()  # the cancellations go out now
    return 0


@contextmanager
def _mailbox(ctx, command: str, done_already: str):
    """The intake mailbox (IMAP, Exchange, Graph) for one command, or None for
    the folder source (Graph keeps its delta link in the database: the state).
    A failure is one sentence: what is done already, and to run it again."""
    if ctx.config.intake.source == "folder":
        yield None
        return
    from scheduler.errors import BackendUnavailable
    from scheduler.ports import PermanentError, TransientError
    from scheduler.wiring import make_source

    source = make_source(ctx.config, ctx.data_dir, ctx.app())
    try:
        yield source
    except (TransientError, PermanentError, BackendUnavailable) as exc:
        raise UserError(f"{command}: {done_already}, but the mailbox could not be cleaned ({exc}); "
                        f"run the same {command} again.") from None
    finally:
        source.close()


def cmd_record_of_processing(ctx) -> int:
    from scheduler.services.record import record_of_processing

    sys.stdout.write(record_of_processing(ctx.config, ctx.args.language))
    return 0
