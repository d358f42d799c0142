"""Keeping calendars in step with decisions: desired state, diffed.

For every thing sparring shows in a calendar (a series or session for the
coordinators, a slot for a caseworker) it computes the ``Meeting`` it should
be now, compares it with what was last sent (``calendar_events``: uid,
sequence, fingerprint, the meeting as sent) and queues only the difference:
a calendar write and, where the backend does not invite by itself, an iTIP
mail. A UID never changes, and is never given to another event: a slot's is
random and kept with its item (``items.event_uid``).

SEQUENCE: every message under a UID has a higher one than any before it
(the row of the UID itself keeps the highest, occurrences included), so a
change, a CANCEL included, is always later than what it changes. A
cancellation carries the event as it was last sent, not as it would be now.

Weekly series with any week parity are one recurring event. The closed days
known when the series is sent are EXDATEs in it; a closed day learned later
(the horizon moved on, a closure added) is sent as a CANCEL of that
occurrence (RECURRENCE-ID). Monthly series (and weekly ones bound to a week
parity, which an INTERVAL=2 rule loses after a 53-week year) are published
as single events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime
from email.utils import make_msgid

from sqlalchemy import select

from scheduler.calendars.serial import meeting_from_json, meeting_to_json
from scheduler.wire import domain_of
from scheduler.model import Attendee, Cadence, Meeting, Recurrence, Series, Session, WeekParity
from scheduler.store.repository import PENDING, Repository
from scheduler.store.tables import Booking, CalendarEvent, Item, SessionState

_SENT = "calendar_events.meeting"  # encryption context of the meeting as last sent

_TEXTS = {
    "da": {
        "slot": "{series}: din tid kl. {time}",
        "slot_body": "Din tid i sparringsforum. Borgeren står på dagsordenen, som du får før mødet.",
        "session_body": "Sparringsforum efter samarbejdsmodellen. Dagsordenen udsendes ved fristen.",
        "extra": "{series} (ekstra møde)",
    },
    "en": {
        "slot": "{series}: your slot at {time}",
        "slot_body": "Your slot in the sparring forum. The citizen is on the agenda you receive before the session.",
        "session_body": "Sparring forum under the cooperation model. The agenda is sent at the deadline.",
        "extra": "{series} (extra session)",
    },
}


def fingerprint(meeting: Meeting) -> str:
    """What a change is judged by. Not SEQUENCE, and not a series' EXDATEs:
    a closed day learned later is a CANCEL of its occurrence, not a new series."""
    data = meeting_to_json(meeting)
    data.pop("sequence")
    if data["recurrence"]:
        data["recurrence"]["exdates"] = []
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
            for index, (item_id, sender, uid) in enumerate(repo.slot_holders(key)):
                seen.add(item_id)
                meetings.append(self.slot_meeting(self.slot_uid(item_id, uid), sender, series, session, index))
        sent = {row.uid: row for row in _load_rows(repo, [m.uid for m in meetings])}
        for meeting in meetings:
            self.apply(repo, meeting, "slot", sent=sent)
        for item_id in sorted(set(item_ids) - seen):
            self._item_left(repo, item_id)

    def slot_uid(self, item_id: int, stored: str | None) -> str:
        """The item's own UID; an item from before UIDs were kept has the row-id one it was sent with."""
        return stored or f"sparring-slot-{item_id}@{self.domain}"

    def slot_meeting(self, uid: str, sender: str, series: Series, session: Session, index: int) -> Meeting:
        start = session.slot_start(index, series.slot_length)
        return Meeting(
            uid=uid,
            summary=self.texts["slot"].format(series=series.name, time=f"{start:%H.%M}"),
            start=start,
            end=start + series.slot_length,
            organizer=self.app.forum_address,
            organizer_name=self.app.forum_name,
            attendees=(Attendee(sender),),
            description=self.texts["slot_body"],
            location=series.location,
        )

    def _item_left(self, repo: Repository, item_id: int) -> None:
        """An item left its session (withdrawn, replaced): its slot is
        cancelled, and so is the acute meeting booked for it."""
        item = repo.db.get(Item, item_id)
        if item is None or item.status == PENDING:
            return
        self.cancel_sent(repo, self.slot_uid(item_id, item.event_uid), lambda: self._slot_as_it_was(repo, item))
        for booking in repo.db.scalars(select(Booking).where(Booking.reference == f"item:{item_id}",
                                                             Booking.status.in_(("booked", "rebooked")))):
            self.cancel_sent(repo, booking.uid)
            booking.status, booking.updated_at = "cancelled", self.app.now()

    def _slot_as_it_was(self, repo: Repository, item: Item) -> Meeting:
        """A slot sent before the meeting as sent was kept: rebuilt at the place
        the item had among its session's items (slot order: acute first)."""
        session = self.app.session_by_key(item.session_key)
        series = self.app.series[session.series_id]
        rows = repo.db.execute(select(Item.id, Item.acute, Item.received_at).where(
            Item.session_key == item.session_key, Item.status == PENDING)).all()
        mine = (not item.acute, item.received_at, item.id)
        index = sum((not r.acute, r.received_at, r.id) < mine for r in rows)
        return self.slot_meeting(self.slot_uid(item.id, item.event_uid), item.sender, series, session, index)

    def cancel_sent(self, repo: Repository, uid: str, rebuild=None) -> None:
        """Cancel what was sent under ``uid``, as it was sent; nothing if
        nothing was (or it is cancelled already). ``rebuild`` gives the
        meeting for a row from before the meeting as sent was kept."""
        row = repo.db.get(CalendarEvent, uid)
        if row is None or row.cancelled:
            return
        meeting = self.last_sent(repo, row) or (rebuild() if rebuild else None)
        if meeting is not None:
            self.apply(repo, _cancelled(meeting), row.kind)

    # -- coordinators' sessions -----------------------------------------

    def publish(self, repo: Repository, first: date, last: date) -> None:
        """Publish every series' sessions from ``first`` to ``last``."""
        for series in self.app.series.values():
            sessions = self.app.planner.sessions(first, last, series.id)
            if _one_recurring_event(series):  # an extra session is an event of its own
                self._publish_recurring(repo, series, [s for s in sessions if not s.extra])
                sessions = [s for s in sessions if s.extra]
            called_off = _called_off(repo, sessions)
            for session in sessions:
                meeting = self._single(series, session)
                if session.planned and session.key not in called_off:
                    self.apply(repo, meeting, "session")
                else:
                    self.apply(repo, _cancelled(meeting), "session", only_if_known=True)

    def cancel_session(self, repo: Repository, session: Session) -> None:
        """A planned session called off (its agenda was empty): its event, or
        its occurrence of the series, is cancelled. Publishing keeps it so."""
        state = repo.db.get(SessionState, session.key)
        if state is not None:
            state.cancel_sent = True
        series = self.app.series[session.series_id]
        if session.extra or not _one_recurring_event(series):
            self.cancel_sent(repo, self._single(series, session).uid)
            return
        epoch = repo.get_meta(f"epoch:{series.id}")
        if epoch is None or session.rule_date < date.fromisoformat(epoch):
            return
        master = self._master(series, date.fromisoformat(epoch))
        row = repo.db.get(CalendarEvent, master.uid)
        sent = self.last_sent(repo, row) if row is not None else None
        self._cancel_occurrence(repo, sent or master, session)

    def _single(self, series: Series, session: Session) -> Meeting:
        kind = "extra" if session.extra else "session"
        meeting = self.session_meeting(series, session, f"sparring-{kind}-{series.id}-{session.rule_date}")
        return _with(meeting, summary=self.texts["extra"].format(series=series.name)) if session.extra else meeting

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
        sessions = [s for s in sessions if s.rule_date >= epoch]
        plain = self._master(series, epoch)
        row = repo.db.get(CalendarEvent, plain.uid)
        before = self.last_sent(repo, row) if row is not None else None
        # What the series excludes when it is sent: every closed day known,
        # those cancelled one by one since, and those it excluded before.
        closed = {_at(s.rule_date, plain, self.app.tz) for s in sessions if not s.planned}
        excluded = set(_exdates(before)) | closed | self._cancelled_occurrences(repo, plain)
        master = _with(plain, recurrence=Recurrence(interval=1, exdates=tuple(sorted(excluded))))
        # A series sent before the meeting as sent was kept excluded nothing.
        sent = self.apply(repo, master, "series") or before or plain
        for session in sessions:
            occurrence_start = _at(session.rule_date, master, self.app.tz)
            if not session.planned:
                if occurrence_start not in _exdates(sent):  # learned after the series went out
                    self._cancel_occurrence(repo, sent, session)
            elif session.start != occurrence_start:  # moved off a closed day
                moved = _with(master, recurrence=None, recurrence_id=occurrence_start,
                              start=session.start, end=session.end)
                self.apply(repo, moved, "occurrence", uid_key=f"#{session.rule_date}")

    def _master(self, series: Series, epoch: date) -> Meeting:
        base = self.app.planner.session_on(series, epoch)
        return _with(self.session_meeting(series, base, f"sparring-series-{series.id}"),
                     recurrence=Recurrence(interval=1))

    def _cancel_occurrence(self, repo: Repository, master: Meeting, session: Session) -> None:
        """The CANCEL of one occurrence of ``master`` (as sent): the override
        sent for it if there was one, else the occurrence as the series has it."""
        start = _at(session.rule_date, master, self.app.tz)
        if start in _exdates(master):
            return
        occurrence = _with(master, recurrence=None, recurrence_id=start, start=start,
                           end=start + (master.end - master.start))
        self.apply(repo, _cancelled(occurrence), "occurrence", uid_key=f"#{session.rule_date}")

    def _cancelled_occurrences(self, repo: Repository, master: Meeting) -> set[datetime]:
        """Start times of the occurrences of ``master`` cancelled one by one."""
        prefix = f"{master.uid}#"
        days = repo.db.scalars(select(CalendarEvent.uid).where(
            CalendarEvent.uid.startswith(prefix, autoescape=True), CalendarEvent.cancelled.is_(True)))
        return {_at(date.fromisoformat(uid[len(prefix):]), master, self.app.tz) for uid in days}

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
              only_if_known: bool = False, sent: dict[str, CalendarEvent] | None = None) -> Meeting | None:
        """Queue what differs between ``meeting`` and what was last sent;
        the meeting as queued, or None when nothing differs.

        A cancellation is of the meeting as last sent, when it was kept.
        SEQUENCE: see the module. An occurrence (``uid_key``) is numbered
        above its series (Outlook ignores an occurrence update below it).
        ``sent``, when given, holds every row there is for the meetings being
        applied (read in one query): a uid not in it was never sent.
        """
        row_id = meeting.uid + uid_key
        row = sent.get(row_id) if sent is not None else repo.db.get(CalendarEvent, row_id)
        if row is None:
            if meeting.cancelled and (only_if_known or kind == "slot"):
                return None
            row = CalendarEvent(uid=row_id, sequence=-1, fingerprint="", cancelled=False, kind=kind,
                                updated_at=self.app.now())
            repo.db.add(row)
            if sent is not None:
                sent[row_id] = row  # the same uid twice in one call is then a change, not a second row
        elif row.cancelled and meeting.cancelled:
            return None
        elif meeting.cancelled:
            meeting = _cancelled(self.last_sent(repo, row) or meeting)
        print_ = fingerprint(meeting)
        if row.fingerprint == print_:
            return None
        meeting = _with(meeting, sequence=self._next_sequence(repo, row, meeting.uid if uid_key else None))
        row.fingerprint, row.cancelled, row.updated_at = print_, meeting.cancelled, self.app.now()
        row.meeting_enc = repo.cipher.encrypt_json(meeting_to_json(meeting), context=_SENT)
        self._queue(repo, meeting, row_id, meeting.sequence)
        return meeting

    @staticmethod
    def _next_sequence(repo: Repository, row: CalendarEvent, series_uid: str | None) -> int:
        """Above every SEQUENCE sent under the UID; the UID's own row keeps it."""
        series = repo.db.get(CalendarEvent, series_uid) if series_uid else None
        sequence = max(row.sequence, series.sequence if series else -1) + 1
        row.sequence = sequence
        if series is not None:
            series.sequence = sequence
        return sequence

    def last_sent(self, repo: Repository, row: CalendarEvent) -> Meeting | None:
        """The meeting as last sent under ``row``; None for a row from before it was kept."""
        if row.meeting_enc is None:
            return None
        return meeting_from_json(repo.cipher.decrypt_json(row.meeting_enc, context=_SENT))

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


def _at(day: date, master: Meeting, tz) -> datetime:
    """The start of the series' occurrence on ``day``: its wall-clock time in
    ``tz`` (a meeting read back from JSON has a fixed offset, not the zone)."""
    return datetime.combine(day, master.start.astimezone(tz).time(), tzinfo=tz)


def _exdates(meeting: Meeting | None) -> tuple[datetime, ...]:
    rule = meeting.recurrence if meeting is not None else None
    return rule.exdates if rule is not None else ()


def _called_off(repo: Repository, sessions: list[Session]) -> set[str]:
    """Keys of the sessions called off after they were published (``cancel_session``)."""
    keys = [s.key for s in sessions]
    return set(repo.db.scalars(select(SessionState.session_key).where(
        SessionState.session_key.in_(keys), SessionState.cancel_sent.is_(True)))) if keys else set()


def _with(meeting: Meeting, **changes) -> Meeting:
    return replace(meeting, **changes)


def _cancelled(meeting: Meeting) -> Meeting:
    return _with(meeting, cancelled=True)


def existing_uids(repo: Repository, kind: str) -> list[str]:
    return list(repo.db.scalars(select(CalendarEvent.uid).where(CalendarEvent.kind == kind)))
