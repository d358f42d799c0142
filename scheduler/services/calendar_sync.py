"""Keeping calendars in step with decisions: desired state, diffed.

For every thing sparring shows in a calendar (a series or session for the
coordinators, a slot for a caseworker) it computes the ``Meeting`` it should
be now, compares it with what was last sent (``calendar_events``: uid,
sequence, fingerprint) and queues only the difference: a calendar write and,
where the backend does not invite by itself, an iTIP mail. SEQUENCE rises
with every change sent; a UID never changes.

Weekly series with any week parity are one recurring event; a cancelled
occurrence is sent as its own CANCEL with RECURRENCE-ID. Monthly series
(and weekly ones bound to a week parity, which an INTERVAL=2 rule loses
after a 53-week year) are published as single events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import date, timedelta
from email.utils import make_msgid

from sqlalchemy import select

from scheduler.calendars.serial import meeting_to_json
from scheduler.mail.compose import domain_of
from scheduler.model import Attendee, Cadence, Meeting, Recurrence, Series, Session, WeekParity
from scheduler.store.repository import PENDING, Repository
from scheduler.store.tables import CalendarEvent, Item

_TEXTS = {
    "da": {
        "slot": "{series}: din tid kl. {time}",
        "slot_body": "Din tid i sparringsforum. Borgeren står på dagsordenen, som du får før mødet.",
        "session_body": "Sparringsforum efter samarbejdsmodellen. Dagsordenen udsendes ved fristen.",
    },
    "en": {
        "slot": "{series}: your slot at {time}",
        "slot_body": "Your slot in the sparring forum. The citizen is on the agenda you receive before the session.",
        "session_body": "Sparring forum under the cooperation model. The agenda is sent at the deadline.",
    },
}


def fingerprint(meeting: Meeting) -> str:
    data = meeting_to_json(meeting)
    data.pop("sequence")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class CalendarSync:
    def __init__(self, app, sends_invitations: bool) -> None:
        self.app = app
        self.sends_invitations = sends_invitations
        self.domain = domain_of(app.forum_address)
        self.texts = _TEXTS[app.language]

    # -- caseworkers' slots ---------------------------------------------

    def items_changed(self, repo: Repository, session_keys: Iterable[str], item_ids: Iterable[int]) -> None:
        """Change handler: bring every slot in these sessions up to date."""
        seen: set[int] = set()
        meetings: list[Meeting] = []
        for key in sorted(set(session_keys)):
            session = self.app.session_by_key(key)
            series = self.app.series[session.series_id]
            for index, (item_id, sender) in enumerate(repo.slot_holders(key)):
                seen.add(item_id)
                meetings.append(self.slot_meeting(item_id, sender, series, session, index))
        sent = {row.uid: row for row in _load_rows(repo, [m.uid for m in meetings])}
        for meeting in meetings:
            self.apply(repo, meeting, "slot", sent=sent)
        for item_id in set(item_ids) - seen:
            self._cancel_slot(repo, item_id)

    def slot_meeting(self, item_id: int, sender: str, series: Series, session: Session, index: int) -> Meeting:
        start = session.slot_start(index, series.slot_length)
        return Meeting(
            uid=f"sparring-slot-{item_id}@{self.domain}",
            summary=self.texts["slot"].format(series=series.name, time=f"{start:%H.%M}"),
            start=start,
            end=start + series.slot_length,
            organizer=self.app.forum_address,
            organizer_name=self.app.forum_name,
            attendees=(Attendee(sender),),
            description=self.texts["slot_body"],
            location=series.location,
        )

    def _cancel_slot(self, repo: Repository, item_id: int) -> None:
        row = repo.db.get(CalendarEvent, f"sparring-slot-{item_id}@{self.domain}")
        if row is None or row.cancelled:
            return
        item = repo.db.get(Item, item_id)
        if item is None or item.status == PENDING:
            return
        session = self.app.session_by_key(item.session_key)
        series = self.app.series[session.series_id]
        meeting = self.slot_meeting(item_id, item.sender, series, session, 0)
        self.apply(repo, _cancelled(meeting), "slot")

    # -- coordinators' sessions -----------------------------------------

    def publish(self, repo: Repository, first: date, last: date) -> None:
        """Publish every series' sessions from ``first`` to ``last``."""
        for series in self.app.series.values():
            sessions = self.app.planner.sessions(first, last, series.id)
            if _one_recurring_event(series):
                self._publish_recurring(repo, series, sessions)
            else:
                for session in sessions:
                    meeting = self.session_meeting(series, session, f"sparring-session-{series.id}-{session.rule_date}")
                    if session.planned:
                        self.apply(repo, meeting, "session")
                    else:
                        self.apply(repo, _cancelled(meeting), "session", only_if_known=True)

    def session_meeting(self, series: Series, session: Session, uid: str) -> Meeting:
        return Meeting(
            uid=f"{uid}@{self.domain}",
            summary=series.name,
            start=session.start,
            end=session.end,
            organizer=self.app.forum_address,
            organizer_name=self.app.forum_name,
            attendees=tuple(Attendee(a) for a in series.coordinators),
            description=self.texts["session_body"],
            location=series.location,
        )

    def _publish_recurring(self, repo: Repository, series: Series, sessions: list[Session]) -> None:
        if not sessions:
            return
        epoch = self._epoch(repo, series, sessions[0])
        base = self.app.planner.session_on(series, epoch)
        master = self.session_meeting(series, base, f"sparring-series-{series.id}")
        master = _with(master, recurrence=Recurrence(interval=1))
        self.apply(repo, master, "series")
        for session in sessions:
            if session.rule_date < epoch:
                continue
            occurrence_start = _at(session.rule_date, base)
            if not session.planned:
                cancel = _with(master, recurrence=None, recurrence_id=occurrence_start,
                               start=occurrence_start, end=occurrence_start + series.duration)
                self.apply(repo, _cancelled(cancel), "occurrence", uid_key=f"#{session.rule_date}")
            elif session.start != occurrence_start:  # moved off a closed day
                moved = _with(master, recurrence=None, recurrence_id=occurrence_start,
                              start=session.start, end=session.end)
                self.apply(repo, moved, "occurrence", uid_key=f"#{session.rule_date}")

    def _epoch(self, repo: Repository, series: Series, first: Session) -> date:
        """The first date of the recurring event: fixed on first publication."""
        key = f"epoch:{series.id}"
        stored = repo.get_meta(key)
        if stored:
            return date.fromisoformat(stored)
        repo.set_meta(key, first.rule_date.isoformat())
        return first.rule_date

    # -- the diff ---------------------------------------------------------

    def apply(self, repo: Repository, meeting: Meeting, kind: str, *, uid_key: str = "",
              only_if_known: bool = False, sent: dict[str, CalendarEvent] | None = None) -> None:
        """Queue what differs between ``meeting`` and what was last sent.

        An occurrence (``uid_key``) starts at its series' SEQUENCE: Outlook
        ignores an occurrence update numbered below the series. ``sent``,
        when given, holds every row there is for the meetings being applied
        (read in one query): a uid not in it was never sent.
        """
        row_id = meeting.uid + uid_key
        row = sent.get(row_id) if sent is not None else repo.db.get(CalendarEvent, row_id)
        print_ = fingerprint(meeting)
        if row is None:
            if meeting.cancelled and (only_if_known or kind == "slot"):
                return
            master = repo.db.get(CalendarEvent, meeting.uid) if uid_key else None
            row = CalendarEvent(uid=row_id, sequence=master.sequence if master else 0, fingerprint=print_,
                                cancelled=meeting.cancelled, kind=kind, updated_at=self.app.now())
            repo.db.add(row)
            if sent is not None:
                sent[row_id] = row  # the same uid twice in one call is then a change, not a second row
        elif row.fingerprint == print_ or (row.cancelled and meeting.cancelled):
            return
        else:
            row.sequence += 1
            row.fingerprint, row.cancelled, row.updated_at = print_, meeting.cancelled, self.app.now()
        meeting = _with(meeting, sequence=row.sequence)
        self._queue(repo, meeting, row_id, row.sequence)

    def _queue(self, repo: Repository, meeting: Meeting, row_id: str, sequence: int) -> None:
        op = "calendar-cancel" if meeting.cancelled else "calendar-put"
        key = f"cal:{row_id}:{sequence}"
        repo.enqueue("calendar", key, [], {"type": op, "meeting": meeting_to_json(meeting)})
        if self.sends_invitations:
            return
        recipients = [a.address for a in meeting.attendees]
        if not recipients:
            return
        # The invitation is rendered when it is sent (``Dispatcher``): the
        # decision stays cheap, and DTSTAMP is the moment it leaves.
        method = "CANCEL" if meeting.cancelled else "REQUEST"
        repo.enqueue("invitation", f"itip:{row_id}:{sequence}", recipients,
                     {"type": "itip", "method": method, "meeting": meeting_to_json(meeting),
                      "message_id": make_msgid(domain=self.domain)})  # the same when sent again


def _load_rows(repo: Repository, uids: list[str], chunk: int = 500) -> list[CalendarEvent]:
    """What was last sent for ``uids``, in a few queries instead of one per uid."""
    rows: list[CalendarEvent] = []
    for first in range(0, len(uids), chunk):
        rows += repo.db.scalars(select(CalendarEvent).where(CalendarEvent.uid.in_(uids[first:first + chunk])))
    return rows


def _one_recurring_event(series: Series) -> bool:
    return series.cadence is Cadence.WEEKLY and series.week_parity is WeekParity.ANY


def _at(day: date, base: Session):
    return base.start + timedelta(days=(day - base.rule_date).days)


def _with(meeting: Meeting, **changes) -> Meeting:
    from dataclasses import replace

    return replace(meeting, **changes)


def _cancelled(meeting: Meeting) -> Meeting:
    return _with(meeting, cancelled=True)


def existing_uids(repo: Repository, kind: str) -> list[str]:
    return list(repo.db.scalars(select(CalendarEvent.uid).where(CalendarEvent.kind == kind)))
