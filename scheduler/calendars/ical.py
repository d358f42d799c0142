"""``Meeting`` to iCalendar (RFC 5545) and iTIP (RFC 5546): pure functions.

The output is what Outlook accepts: ORGANIZER and ATTENDEEs with the
parameters it expects, a stable UID, SEQUENCE from the meeting, a UTC
DTSTAMP passed in (no clock is read here), local DTSTART/DTEND with TZID
and a VTIMEZONE written with yearly RRULEs (see ``vtimezone``).

``method=None`` gives a calendar object resource for storage (CalDAV and
the local folder, where RFC 4791 forbids METHOD); REQUEST and CANCEL give
iTIP messages, PUBLISH a read-only feed.

``to_ical`` (and ``render``, which the local folder writes with) gives the
bytes icalendar gives for the assembled calendar, but serialises only the
VEVENTs per call: the calendar's own lines and the VTIMEZONE are the same
for every object of a method, zone and year.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vCalAddress

from scheduler.calendars.vtimezone import vtimezone, vtimezone_ical
from scheduler.logs import CPR_SHAPE
from scheduler.model import Attendee, Meeting

Method = Literal["REQUEST", "CANCEL", "PUBLISH"]
PRODID = "-//sparring//sparringsforum//DA"
_END = b"END:VCALENDAR\r\n"


def to_ical(
    meetings: Sequence[Meeting], method: Method | None, tz: ZoneInfo, *, stamp: datetime
) -> bytes:
    """One VCALENDAR holding a VEVENT per meeting, serialised (as
    ``build_calendar(...).to_ical()``)."""
    return render(_vevents(meetings, method, tz, stamp), tz, method)


def build_calendar(
    meetings: Sequence[Meeting], method: Method | None, tz: ZoneInfo, *, stamp: datetime
) -> Calendar:
    return assemble(_vevents(meetings, method, tz, stamp), tz, method)


def _vevents(meetings: Sequence[Meeting], method: Method | None, tz: ZoneInfo, stamp: datetime) -> list[Event]:
    if not meetings:
        raise ValueError("no meetings to write")
    if method != "PUBLISH" and len({m.uid for m in meetings}) != 1:
        raise ValueError("a calendar object and an iTIP message hold one UID")
    return [vevent(m, tz, stamp=stamp, cancel=method == "CANCEL") for m in meetings]


def assemble(events: Sequence[Event], tz: ZoneInfo, method: Method | None = None) -> Calendar:
    """A VCALENDAR around ``events``: the master first, then overrides in order."""
    calendar = _calendar(method)
    calendar.add_component(vtimezone(tz, _year(events)))
    for event in sorted(events, key=_order):
        calendar.add_component(event)
    return calendar


def render(events: Sequence[Event], tz: ZoneInfo, method: Method | None = None) -> bytes:
    """``assemble(events, tz, method).to_ical()``, the same bytes: icalendar
    writes a component as its own lines, then each subcomponent's, then END,
    each line folded on its own; so the constant parts are written once."""
    body = b"".join(event.to_ical() for event in sorted(events, key=_order))
    return _head(method) + vtimezone_ical(tz, _year(events)) + body + _END


@lru_cache(maxsize=8)
def _head(method: Method | None) -> bytes:
    """The VCALENDAR's BEGIN and own properties, serialised."""
    whole = _calendar(method).to_ical()
    assert whole.endswith(_END)
    return whole[: -len(_END)]


def _calendar(method: Method | None) -> Calendar:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    if method:
        calendar.add("method", method)
    return calendar


def _year(events: Sequence[Event]) -> int:
    """The VTIMEZONE is written from the year of the first start on."""
    return min(_start(e) for e in events).year


def vevent(meeting: Meeting, tz: ZoneInfo, *, stamp: datetime, cancel: bool = False) -> Event:
    """The VEVENT for ``meeting``; ``cancel`` forces STATUS:CANCELLED."""
    _check(meeting)
    event = Event()
    event.add("uid", meeting.uid)
    event.add("dtstamp", _utc(stamp))
    event.add("sequence", meeting.sequence)
    event.add("dtstart", meeting.start.astimezone(tz))
    event.add("dtend", meeting.end.astimezone(tz))
    event.add("summary", meeting.summary)
    if meeting.description:
        event.add("description", meeting.description)
    if meeting.location:
        event.add("location", meeting.location)
    event.add("class", "PRIVATE")
    event.add("transp", "OPAQUE")
    event.add("status", "CANCELLED" if cancel or meeting.cancelled else "CONFIRMED")
    if meeting.categories:
        event.add("categories", list(meeting.categories))
    event.add("organizer", organizer(meeting))
    for attendee in meeting.attendees:
        event.add("attendee", attendee_address(attendee))
    if meeting.recurrence_id is not None:
        event.add("recurrence-id", meeting.recurrence_id.astimezone(tz))
    elif meeting.recurrence is not None:
        _add_recurrence(event, meeting, tz)
    return event


def organizer(meeting: Meeting) -> vCalAddress:
    address = vCalAddress(f"mailto:{meeting.organizer}")
    address.params["CN"] = meeting.organizer_name or meeting.organizer
    return address


def attendee_address(attendee: Attendee) -> vCalAddress:
    address = vCalAddress(f"mailto:{attendee.address}")
    address.params["CN"] = attendee.name or attendee.address
    address.params["CUTYPE"] = "INDIVIDUAL"
    address.params["ROLE"] = "REQ-PARTICIPANT" if attendee.required else "OPT-PARTICIPANT"
    address.params["PARTSTAT"] = "NEEDS-ACTION"
    address.params["RSVP"] = "TRUE"
    return address


def _add_recurrence(event: Event, meeting: Meeting, tz: ZoneInfo) -> None:
    rule = meeting.recurrence
    assert rule is not None
    recur: dict[str, object] = {"freq": "weekly", "interval": rule.interval}
    if rule.until is not None:
        # UNTIL is UTC when DTSTART has a TZID (RFC 5545 3.3.10); the last
        # occurrence is the one starting on ``until``.
        local = meeting.start.astimezone(tz)
        last = datetime.combine(rule.until, local.time(), tz)
        recur["until"] = _utc(last)
    event.add("rrule", recur)
    if rule.exdates:
        event.add("exdate", [d.astimezone(tz) for d in sorted(rule.exdates)])


def _check(meeting: Meeting) -> None:
    for moment in (meeting.start, meeting.end, meeting.recurrence_id):
        if moment is not None and moment.tzinfo is None:
            raise ValueError(f"meeting {meeting.uid}: times must carry a time zone")
    if meeting.end <= meeting.start:
        raise ValueError(f"meeting {meeting.uid}: ends before it starts")
    for text in (meeting.summary, meeting.description, meeting.location):
        if CPR_SHAPE.search(text):
            # The text itself is not repeated: it may be the very CPR number.
            raise ValueError(f"meeting {meeting.uid}: its text looks like it holds a CPR number")


def recurrence_key(event: Event) -> datetime | None:
    """RECURRENCE-ID of an override in UTC; None for a master or single event."""
    value = event.get("recurrence-id")
    if value is None:
        return None
    moment = value.dt
    if not isinstance(moment, datetime):
        return datetime.combine(moment, datetime.min.time(), timezone.utc)
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _order(event: Event) -> tuple[bool, datetime]:
    key = recurrence_key(event)
    return (key is not None, key or datetime.min.replace(tzinfo=timezone.utc))


def _start(event: Event) -> datetime:
    moment = event.decoded("dtstart")
    return moment if isinstance(moment, datetime) else datetime.combine(moment, datetime.min.time())


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("DTSTAMP needs a time zone")
    return moment.astimezone(timezone.utc).replace(microsecond=0)


# -- calendar objects as stored: one UID, the master and its overrides --------


def parse_object(data: bytes | str) -> Calendar:
    """A stored calendar object; ValueError (without its content) if unreadable."""
    try:
        return Calendar.from_ical(data)
    except ValueError:
        raise ValueError("a stored calendar object is not valid iCalendar") from None


def merge_put(existing: Calendar | None, meeting: Meeting, tz: ZoneInfo, *, stamp: datetime) -> Calendar:
    """``existing`` with ``meeting`` written in: a master replaces the master
    (keeping the overrides of a series), an override replaces its occurrence."""
    return assemble(put_events(events_of(existing), meeting, tz, stamp=stamp), tz)


def merge_cancel(existing: Calendar | None, meeting: Meeting, tz: ZoneInfo, *, stamp: datetime) -> Calendar | None:
    """``existing`` with the event marked CANCELLED, or one occurrence
    excluded; None when there is nothing to cancel. A cancelled series keeps
    its rule and overrides; a cancelled occurrence becomes an EXDATE of the
    master (its override, if any, goes): readers list a STATUS:CANCELLED
    override as an occurrence still."""
    events = cancel_events(events_of(existing), meeting, tz, stamp=stamp)
    return None if events is None else assemble(events, tz)


# The same on a stored object's VEVENTs, for writers that serialise with
# ``render`` (``assemble`` orders them). They may change the events given.


def put_events(events: Sequence[Event], meeting: Meeting, tz: ZoneInfo, *, stamp: datetime) -> list[Event]:
    new = vevent(meeting, tz, stamp=stamp)
    key = recurrence_key(new)
    if key is None:
        excluded = {_utc(d) for d in meeting.recurrence.exdates} if meeting.recurrence else set()
        kept = [e for e in events if recurrence_key(e) not in (None, *excluded)] if meeting.recurrence else []
    else:
        kept = [e for e in events if recurrence_key(e) != key]
    return [*kept, new]


def cancel_events(events: Sequence[Event], meeting: Meeting, tz: ZoneInfo, *, stamp: datetime) -> list[Event] | None:
    key = None if meeting.recurrence_id is None else _utc(meeting.recurrence_id)
    master = next((e for e in events if recurrence_key(e) is None), None)
    if key is not None:
        if master is None and all(recurrence_key(e) != key for e in events):
            return None
        kept = [e for e in events if recurrence_key(e) != key]
        if master is None:  # an override without its series: nothing to fold it into
            return [*kept, vevent(meeting, tz, stamp=stamp, cancel=True)]
        _exclude(master, meeting.recurrence_id, tz, meeting.sequence, stamp)
        return kept
    if not events:
        return None
    for event in events:
        _mark_cancelled(event, meeting.sequence, stamp)
    return list(events)


def events_of(calendar: Calendar | None) -> list[Event]:
    return [] if calendar is None else list(calendar.walk("VEVENT"))


def _exclude(master: Event, start: datetime, tz: ZoneInfo, sequence: int, stamp: datetime) -> None:
    """Add ``start`` to the master's EXDATEs (once), as a change of the master."""
    if _utc(start) not in set(_exdates_of(master)):
        master.add("exdate", [start.astimezone(tz)])
    _restamp(master, sequence, stamp)


def _exdates_of(event: Event) -> Iterator[datetime]:
    """The EXDATE values of ``event`` in UTC."""
    value = event.get("exdate")
    for line in value if isinstance(value, list) else [value] if value is not None else []:
        for item in line.dts:
            moment = item.dt
            if isinstance(moment, datetime):
                yield moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _restamp(event: Event, sequence: int, stamp: datetime) -> None:
    old = int(event.get("sequence", 0))
    for name in ("sequence", "dtstamp"):
        event.pop(name, None)
    event.add("sequence", max(old, sequence))
    event.add("dtstamp", _utc(stamp))


def _mark_cancelled(event: Event, sequence: int, stamp: datetime) -> None:
    event.pop("status", None)
    event.add("status", "CANCELLED")
    _restamp(event, sequence, stamp)
