"""The calendar half of the fake Microsoft Graph server: events, instances,
cancel, the UID extended property and getSchedule, in memory.

``FakeCalendar`` keeps one mailbox's events as Graph would: an event is the
JSON that was posted, patched since; a series is expanded into its
occurrences (weekly patterns, what sparring writes) with cancelled and
changed occurrences kept per original start (a PATCH that writes the
recurrence drops them, as Outlook does when a pattern changes). Create honours
``transactionId`` (a repeat returns the first event). getSchedule answers
for the fake's mailboxes and the people on their events (busy where they
attend, plus a person's own ``availability`` set by a test); anybody else
gets Graph's per-schedule error. ``register(fake)`` adds the routes to the
fake Graph of tests/servers/graph.py (the ``graph_calendar`` fixture does);
each mailbox's calendar lives in its ``calendar`` dict, so ``reset``
empties it too. Responses follow the shapes of Microsoft's documented
examples, cut to the fields sparring reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from urllib.parse import unquote

import pytest

from scheduler.graph.events import UID_PROPERTY, parse_time, zone_of
from tests.servers.graph import MAILBOX, Reply, error

UTC = timezone.utc
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_FILTER_VALUE = re.compile(r"ep/id eq '(?P<id>(?:[^']|'')*)' and ep/value eq '(?P<value>(?:[^']|'')*)'")
_MAILBOX = r"/users/(?P<user>[^/]+)"
_EVENT = _MAILBOX + r"/events/(?P<event>[^/]+)"


@dataclass
class FakeEvent:
    id: str
    mailbox: str
    data: dict
    uid: str = ""
    cancelled: set[datetime] = field(default_factory=set)  # original starts (UTC) of occurrences
    changed: dict[datetime, dict] = field(default_factory=dict)  # original start -> patched fields

    @property
    def attendees(self) -> list[str]:
        return [a["emailAddress"]["address"].lower() for a in self.data.get("attendees", [])]

    def span(self) -> tuple[datetime, datetime]:
        return parse_time(self.data["start"], UTC), parse_time(self.data["end"], UTC)

    def occurrences(self, until: datetime) -> list[tuple[datetime | None, datetime, datetime]]:
        """(original start or None, start, end) of each live occurrence starting before ``until``."""
        start, end = self.span()
        rule = self.data.get("recurrence")
        if not rule:
            return [(None, start, end)]
        out = []
        for original in _weekly(rule, start, until):
            if original in self.cancelled:
                continue
            patch = self.changed.get(original, {})
            first = parse_time(patch["start"], UTC) if "start" in patch else original
            last = parse_time(patch["end"], UTC) if "end" in patch else original + (end - start)
            out.append((original, first, last))
        return out


def _weekly(rule: dict, start: datetime, until: datetime) -> list[datetime]:
    """The original starts (UTC) of a weekly ``patternedRecurrence`` before ``until``."""
    pattern, span = rule["pattern"], rule["range"]
    tz = zone_of(span.get("recurrenceTimeZone") or "UTC")
    local = start.astimezone(tz)
    first = date.fromisoformat(span["startDate"])
    last = date.fromisoformat(span["endDate"]) if span.get("type") == "endDate" else until.date()
    days = {_WEEKDAYS.index(d) for d in pattern["daysOfWeek"]}
    monday = first - timedelta(days=first.weekday())
    out, day = [], first
    while day <= last:
        weeks = (day - monday).days // 7
        if day.weekday() in days and weeks % pattern.get("interval", 1) == 0:
            moment = datetime.combine(day, local.time(), tz).astimezone(UTC)
            if moment >= until:
                break
            out.append(moment)
        day += timedelta(days=1)
    return out


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc_time(moment: datetime) -> dict:
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}


class FakeCalendar:
    """One mailbox's calendar (kept in the fake mailbox's ``calendar`` dict)."""

    def __init__(self, mailbox: str) -> None:
        self.mailbox = mailbox
        self.events: dict[str, FakeEvent] = {}
        self.deleted: list[FakeEvent] = []  # cancelled or deleted whole events (Deleted Items)
        self.transactions: dict[str, str] = {}
        self.comments: list[str] = []  # the comments of cancellations, in order
        self.availability: list[tuple[datetime, datetime, str]] = []  # this person's own items

    def by_uid(self, uid: str) -> list[FakeEvent]:
        return [e for e in self.events.values() if e.uid == uid]

    def occurrences(self, uid: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The live (start, end) of the events with ``uid``, clipped to the window, in UTC."""
        return sorted((max(a, start), min(b, end)) for e in self.by_uid(uid)
                      for _, a, b in e.occurrences(end) if a < end and b > start)

    def attended(self, address: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The live occurrences ``address`` organises or attends, overlapping the window."""
        return sorted((max(a, start), min(b, end)) for e in self.events.values()
                      if address == self.mailbox or address in e.attendees
                      for _, a, b in e.occurrences(end) if a < end and b > start)

    def find(self, event_id: str) -> tuple[FakeEvent, datetime | None] | None:
        """An event id, or an occurrence id (``<series id>_<original start>``)."""
        if event_id in self.events:
            return self.events[event_id], None
        master, _, stamp = event_id.rpartition("_")
        event = self.events.get(master)
        if event is None or not stamp:
            return None
        original = parse_time(stamp, UTC)
        live = {o for o, _, _ in event.occurrences(original + timedelta(seconds=1))}
        return (event, original) if original in live else None

    def remove(self, event_id: str, comment: str | None) -> Reply:
        found = self.find(event_id)
        if found is None:
            return _missing()
        event, original = found
        if comment is not None:
            self.comments.append(comment)
        if original is None:
            self.deleted.append(self.events.pop(event.id))
        else:
            event.cancelled.add(original)
        return Reply(202 if comment is not None else 204)


def calendar_of(fake, mailbox: str = MAILBOX) -> FakeCalendar:
    box = fake.mailbox(mailbox)
    if "fake" not in box.calendar:
        box.calendar["fake"] = FakeCalendar(box.address)
    return box.calendar["fake"]


def register(fake) -> None:
    """Add the calendar routes to a ``FakeGraph`` (once)."""
    if getattr(fake, "calendar_routes", False):
        return
    for method, pattern, permission, handler in _ROUTES:
        fake.route(method, pattern, permission)(handler)
    fake.calendar_routes = True


@pytest.fixture
def graph_calendar(graph):
    """The forum mailbox's fake calendar, the routes registered, emptied for this test."""
    register(graph)
    return calendar_of(graph)


# -- handlers: (fake, request) -> Reply | dict ------------------------------------------


def _missing() -> Reply:
    return error(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def _calendar(fake, request) -> FakeCalendar:
    return calendar_of(fake, unquote(request.match["user"]))


def _event_id(request) -> str:
    return unquote(request.match["event"])


def _list_events(fake, request):
    calendar = _calendar(fake, request)
    found = list(calendar.events.values())
    wanted = _FILTER_VALUE.search(request.query.get("$filter", ""))
    if wanted is not None:
        if wanted["id"].replace("''", "'") != UID_PROPERTY:
            found = []
        found = [e for e in found if e.uid == wanted["value"].replace("''", "'")]
    return {"value": [_summary(e) for e in found]}


def _create(fake, request):
    calendar, body = _calendar(fake, request), request.json or {}
    known = calendar.transactions.get(body.get("transactionId", ""))
    if known in calendar.events:
        return Reply(201, _summary(calendar.events[known]))
    event = FakeEvent(fake.new_id(), calendar.mailbox, dict(body))
    for prop in body.get("singleValueExtendedProperties", []):
        if prop["id"] == UID_PROPERTY:
            event.uid = prop["value"]
    calendar.events[event.id] = event
    if body.get("transactionId"):
        calendar.transactions[body["transactionId"]] = event.id
    return Reply(201, _summary(event))


def _update(fake, request):
    found = _calendar(fake, request).find(_event_id(request))
    if found is None:
        return _missing()
    event, original = found
    if original is None:
        if "recurrence" in (request.json or {}):  # Outlook's way: a rewritten pattern drops the exceptions
            event.cancelled.clear()
            event.changed.clear()
        event.data.update(request.json or {})
    else:
        event.changed.setdefault(original, {}).update(request.json or {})
    return _summary(event)


def _delete(fake, request):
    return _calendar(fake, request).remove(_event_id(request), None)


def _cancel(fake, request):
    calendar = _calendar(fake, request)
    found = calendar.find(_event_id(request))
    if found is not None and not found[0].attendees:
        return error(400, "ErrorInvalidRequest", "Your request can't be completed. The event is not a meeting.")
    return calendar.remove(_event_id(request), (request.json or {}).get("comment", ""))


def _instances(fake, request):
    start = parse_time(request.query["startDateTime"], UTC)
    end = parse_time(request.query["endDateTime"], UTC)
    event = _calendar(fake, request).events.get(_event_id(request))
    if event is None:
        return _missing()
    return {"value": [
        {"id": f"{event.id}_{_stamp(original)}", "type": "exception" if original in event.changed else "occurrence",
         "originalStart": _stamp(original), "start": _utc_time(a), "end": _utc_time(b)}
        for original, a, b in event.occurrences(end) if original is not None and a < end and b > start]}


def _get_schedule(fake, request):
    body = request.json or {}
    start, end = parse_time(body["startTime"], UTC), parse_time(body["endTime"], UTC)
    calendars = [b.calendar["fake"] for b in fake.mailboxes.values() if "fake" in b.calendar]
    people = set(fake.mailboxes) | {a for c in calendars for e in [*c.events.values(), *c.deleted]
                                    for a in e.attendees}
    return {"value": [_schedule(a, start, end, calendars, people) for a in body.get("schedules", [])]}


def _schedule(address: str, start: datetime, end: datetime, calendars: list[FakeCalendar],
              people: set[str]) -> dict:
    key = address.lower()
    if key not in people:
        return {"scheduleId": address, "availabilityView": "", "scheduleItems": [],
                "error": {"message": "fake Graph: not found", "responseCode": "ErrorMailRecipientNotFound"}}
    items = [{"status": "busy", "start": _utc_time(a), "end": _utc_time(b)}
             for c in calendars for a, b in c.attended(key, start, end)]
    own = next((c for c in calendars if c.mailbox == key), None)
    items += [{"status": s, "start": _utc_time(a), "end": _utc_time(b)}
              for a, b, s in (own.availability if own else []) if a < end and b > start]
    return {"scheduleId": address, "availabilityView": "", "scheduleItems": items}


def _summary(event: FakeEvent) -> dict:
    return {"id": event.id, "type": "seriesMaster" if event.data.get("recurrence") else "singleInstance",
            "subject": event.data.get("subject", ""), "start": event.data["start"], "end": event.data["end"],
            "recurrence": _as_graph_says(event.data.get("recurrence"))}


def _as_graph_says(rule: dict | None) -> dict | None:
    """A recurrence as Graph returns it: every field, some of ours in another spelling."""
    if rule is None:
        return None
    pattern = {"type": "weekly", "interval": 1, "month": 0, "dayOfMonth": 0, "firstDayOfWeek": "sunday",
               "index": "first", **rule["pattern"]}
    span = {"type": "noEnd", "endDate": "0001-01-01", "recurrenceTimeZone": "UTC", "numberOfOccurrences": 0,
            **rule["range"]}
    pattern["daysOfWeek"] = [d.capitalize() for d in reversed(pattern["daysOfWeek"])]
    return {"pattern": pattern, "range": span}


_ROUTES = [
    ("GET", _MAILBOX + r"/events", "Calendars.Read", _list_events),
    ("POST", _MAILBOX + r"/events", "Calendars.ReadWrite", _create),
    ("PATCH", _EVENT, "Calendars.ReadWrite", _update),
    ("DELETE", _EVENT, "Calendars.ReadWrite", _delete),
    ("POST", _EVENT + r"/cancel", "Calendars.ReadWrite", _cancel),
    ("GET", _EVENT + r"/instances", "Calendars.Read", _instances),
    ("POST", _MAILBOX + r"/calendar/getSchedule", "Calendars.Read", _get_schedule),
]
