"""``sparring simulate``: the whole cycle in simulated time.

Mails waiting in the inbox folder are received at their Date header's time;
sessions are published, deadlines fire and agendas are compiled, and the
outbox is delivered after every event, all on the configured backends with
a clock that jumps from event to event. The same services as the daemon,
without its scheduler: events are simply taken in time order.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime
from pathlib import Path

from scheduler.ports import IncomingMail, MailSource
from scheduler.services import backlog, casework, deadlines, decisions, meetings, publishing
from scheduler.services.intake import Intake


@dataclass
class Summary:
    sessions: Counter = field(default_factory=Counter)  # (series, status)
    outcomes: Counter = field(default_factory=Counter)  # (series or "-", outcome)
    agendas: Counter = field(default_factory=Counter)  # series
    skipped: int = 0
    cooperation: int = 0
    reminders: int = 0
    cases_closed: int = 0
    cases_escalated: int = 0
    backlog_warnings: Counter = field(default_factory=Counter)  # series
    extra_sessions: int = 0

    def table(self, series_ids: list[str]) -> str:
        rows = [f"{'series':<10} {'sessions':>8} {'cancelled':>9} {'items':>6} {'moved':>6} {'agendas':>8}"]
        for sid in series_ids:
            placed = self.outcomes[(sid, "accepted")] + self.outcomes[(sid, "moved")]
            rows.append(
                f"{sid:<10} {self.sessions[(sid, 'planned')]:>8} {self.sessions[(sid, 'cancelled')]:>9} "
                f"{placed:>6} {self.outcomes[(sid, 'moved')]:>6} {self.agendas[sid]:>8}"
            )
        totals = Counter()
        for (_, outcome), count in self.outcomes.items():
            totals[outcome] += count
        rows.append("mails: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
        rows.append(f"deadline reminders sent: {self.reminders}; cooperation meetings booked: {self.cooperation}")
        rows.append(f"cases closed: {self.cases_closed}; coordinators told of missing agreement: "
                    f"{self.cases_escalated}")
        if self.backlog_warnings or self.extra_sessions:
            warned = ", ".join(f"{sid} {n}" for sid, n in sorted(self.backlog_warnings.items()))
            rows.append(f"backlog warnings: {warned or 0}; extra sessions added: {self.extra_sessions}")
        if self.skipped:
            rows.append(f"left in the inbox (dated outside the period): {self.skipped}")
        return "\n".join(rows)


def _received_at(raw: bytes, fallback: datetime, tz) -> datetime:
    """The Date header's time, or ``fallback`` for a missing or unreadable one
    (8-bit bytes, the year 9999: a hostile mail must not stop the simulation)."""
    try:
        header = BytesHeaderParser().parsebytes(raw).get("Date")
        moment = parsedate_to_datetime(str(header)) if header else None
        if moment is None:
            return fallback
        return moment.astimezone(tz) if moment.tzinfo else moment.replace(tzinfo=tz)
    except Exception:
        return fallback


def simulate(app, dispatcher, first: date, last: date, folders: MailSource) -> Summary:
    """Run ``first``..``last`` (both included); the app's clock must be settable.
    ``folders`` (the folder source over the inbox) files each mail once decided."""
    tz = app.tz
    start = datetime.combine(first, time(0), tzinfo=tz)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz)
    summary = Summary()
    inbox = app.data_dir / "inbox"
    events: list[tuple[datetime, int, object]] = []
    for path in sorted(inbox.glob("*.eml")) if inbox.is_dir() else []:
        raw = path.read_bytes()
        at = _received_at(raw, start, tz)
        if start <= at < end:
            events.append((at, 1, (path, raw)))
        else:
            summary.skipped += 1
    for session in deadlines.agenda_due(app, start, end):
        events.append((session.deadline, 2, session.key))
    for session, moment in deadlines.reminders_due(app, start, end):
        events.append((moment, 3, session.key))
    day = first
    while day <= last:  # the daemon's jobs: cooperation meetings in the morning, cases every hour
        events.append((datetime.combine(day, time(6), tzinfo=tz), 0, day))
        events += [(datetime.combine(day, time(hour, 5), tzinfo=tz), 4, None) for hour in range(24)]
        day += timedelta(days=1)
    for session in app.planner.sessions(first, last):
        summary.sessions[(session.series_id, session.status.value)] += 1
    events.sort(key=_order)
    app.clock.set(start)
    publishing.publish_horizon(app)
    intake = Intake(app)
    try:
        _replay(app, dispatcher, intake, events, summary, _Held(folders))
    finally:
        intake.close()
    app.clock.set(end)
    dispatcher.run_once(limit=10_000)
    return summary


def _order(event) -> tuple:
    return event[0], event[1]


def _replay(app, dispatcher, intake: Intake, events: list, summary: Summary, held: _Held) -> None:
    """The year's events in order, on the simulated clock. An extra session
    added on the way (a coordinator's "Ekstra møde: ja") joins the events
    with its agenda's deadline."""
    dispatched_on = None
    index = 0
    while index < len(events):
        moment, kind, payload = events[index]
        index += 1
        if kind != 1 or moment.date() != dispatched_on:
            known = app.planner.extras
            if held.decide(intake, summary):  # the mails up to now, as the daemon takes a batch
                _backlog(app, events, index, summary, known)
        if moment.date() != dispatched_on:  # the outbox is delivered once a simulated day
            dispatcher.run_once(limit=10_000)
            dispatched_on = moment.date()
        app.clock.set(max(moment, app.clock.now()))
        if kind == 0:
            summary.cooperation += len(meetings.book_cooperation(app, payload))
        elif kind == 1:
            held.add(*payload, moment)
        elif kind == 3:
            summary.reminders += int(deadlines.send_reminder(app, payload))
        elif kind == 4:  # the daemon's hourly jobs: koordineringsmøder still to book, cases, the backlog
            _backlog(app, events, index, summary, app.planner.extras)
            decisions.book_pending(app)
            due = casework.tick(app)
            summary.cases_closed += len(due.closed)
            summary.cases_escalated += len(due.escalated)
        elif deadlines.send_agenda(app, payload):
            summary.agendas[payload.partition("/")[0]] += 1
            dispatcher.run_once(limit=10_000)  # an agenda leaves at its deadline
    held.decide(intake, summary)


def _backlog(app, events: list, index: int, summary: Summary, known: tuple) -> None:
    """The backlog check, as the daemon runs it after each intake round and
    hourly; an extra session added since ``known`` (a reply in the round)
    has its agenda join the events still to come."""
    for warning in backlog.check(app):
        summary.backlog_warnings[warning.series_id] += 1
    for session in set(app.planner.extras) - set(known):
        summary.extra_sessions += 1
        bisect.insort(events, (max(session.deadline, app.now()), 2, session.key), lo=index, key=_order)


class _Held:
    """The inbox files that have "arrived" by the simulated clock, served to
    ``Intake.run`` as a mail source: a batch per stretch between other events,
    each mail with its own arrival time, filed once decided as the folder
    source files it (sealed with the data key)."""

    def __init__(self, folders: MailSource) -> None:
        self.folders = folders  # the folder source: settling files (and seals) the mails
        self.mails: list[IncomingMail] = []
        self.paths: dict[str, Path] = {}

    def add(self, path: Path, raw: bytes, at: datetime) -> None:
        self.mails.append(IncomingMail(path.name, raw, at))
        self.paths[path.name] = path

    def decide(self, intake: Intake, summary: Summary) -> bool:
        """Decide what has arrived; True if anything had."""
        took = bool(self.mails)
        while self.mails:
            for outcome in intake.run(self):
                summary.outcomes[(outcome.series or "-", outcome.outcome)] += 1
        return took

    def fetch(self, limit: int) -> list[IncomingMail]:
        return self.mails[:limit]

    def settle(self, moves) -> None:
        self.folders.settle(moves)
        done = {ref for refs in moves.values() for ref in refs}
        for ref in done:
            self.paths.pop(ref, None)
        self.mails = [m for m in self.mails if m.ref not in done]

    def wait(self, timeout: float) -> bool:
        return False

    def close(self) -> None:
        pass

