"""Busy intervals from iCalendar data: events, recurring series, VFREEBUSY.

Every VEVENT counts as busy unless it is TRANSP:TRANSPARENT or
STATUS:CANCELLED (Outlook's X-MICROSOFT-CDO-BUSYSTATUS:FREE too). Series
are expanded with ``recurring_ical_events`` (EXDATE and RECURRENCE-ID
overrides honoured). Times may carry a TZID, be UTC or floating (read in
the service's zone); an all-day event makes its whole local days busy.
FREEBUSY lines (a VFREEBUSY, e.g. a CalDAV free-busy REPORT) map by FBTYPE.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import recurring_ical_events
from icalendar import Calendar, Component

from scheduler.model import BusyInterval, BusyKind

COPENHAGEN = ZoneInfo("Europe/Copenhagen")
_FBTYPES = {
    "BUSY": BusyKind.BUSY,
    "BUSY-TENTATIVE": BusyKind.TENTATIVE,
    "BUSY-UNAVAILABLE": BusyKind.OUT_OF_OFFICE,
}


def parse_busy(ics: bytes, start: datetime, end: datetime, *, tz: ZoneInfo = COPENHAGEN) -> list[BusyInterval]:
    """Busy intervals in ``ics`` overlapping ``start``..``end``, clipped to it.

    Raises ValueError (without the content) when ``ics`` is not iCalendar.
    """
    return busy_in(parse_calendar(ics), start, end, tz)


def parse_calendar(ics: bytes) -> Calendar:
    """``ics`` parsed; ValueError (without the content) when it is not iCalendar."""
    try:
        return Calendar.from_ical(ics)
    except ValueError:
        raise ValueError("free/busy data is not valid iCalendar") from None


def busy_in(calendar: Calendar, start: datetime, end: datetime, tz: ZoneInfo) -> list[BusyInterval]:
    """Busy intervals in a parsed ``calendar``, as ``parse_busy`` gives them."""
    found = [interval for _, interval in event_busy(calendar, start, end, tz)]
    found.extend(freebusy_lines(calendar, start, end, tz))
    return sorted(found, key=lambda i: (i.start, i.end))


def event_busy(
    calendar: Calendar, start: datetime, end: datetime, tz: ZoneInfo
) -> Iterable[tuple[Component, BusyInterval]]:
    """Each busy occurrence of a VEVENT in the window, with its component."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("a free/busy window needs time zones")
    for occurrence in recurring_ical_events.of(calendar, components=["VEVENT"]).between(start, end):
        kind = event_kind(occurrence)
        if kind is None:
            continue
        interval = _clip(*_span(occurrence, tz), kind, start, end, tz)
        if interval is not None:
            yield occurrence, interval


def event_kind(event: Component) -> BusyKind | None:
    """How an event occupies its time; None when it does not."""
    if str(event.get("transp", "OPAQUE")).upper() == "TRANSPARENT":
        return None
    status = str(event.get("status", "CONFIRMED")).upper()
    if status == "CANCELLED":
        return None
    outlook = str(event.get("x-microsoft-cdo-busystatus", "")).upper()
    if outlook == "FREE":
        return None
    if outlook == "OOF":
        return BusyKind.OUT_OF_OFFICE
    if outlook == "TENTATIVE" or status == "TENTATIVE":
        return BusyKind.TENTATIVE
    return BusyKind.BUSY


def freebusy_lines(calendar: Calendar, start: datetime, end: datetime, tz: ZoneInfo) -> list[BusyInterval]:
    found: list[BusyInterval] = []
    for component in calendar.walk("VFREEBUSY"):
        lines = component.get("freebusy", [])
        for line in lines if isinstance(lines, list) else [lines]:
            kind = _FBTYPES.get(str(line.params.get("FBTYPE", "BUSY")).upper())
            if kind is None:  # FREE
                continue
            for period in _periods(line):
                interval = _clip(_aware(period[0], tz), _period_end(period, tz), kind, start, end, tz)
                if interval is not None:
                    found.append(interval)
    return found


def participants(event: Component) -> set[str]:
    """Lower-cased addresses of the organiser and attendees of ``event``."""
    people = event.get("attendee", [])
    people = people if isinstance(people, list) else [people]
    found = {_address(p) for p in people}
    organizer = organizer_of(event)
    return found | {organizer} if organizer else found


def organizer_of(event: Component) -> str | None:
    organizer = event.get("organizer")
    return None if organizer is None else _address(organizer)


def _address(value: object) -> str:
    text = str(value)
    return (text[7:] if text.lower().startswith("mailto:") else text).lower()


def busy_by_participant(
    calendars: Iterable[Calendar], addresses: Sequence[str], start: datetime, end: datetime, tz: ZoneInfo
) -> dict[str, list[BusyInterval]]:
    """From calendars sparring owns: each address's busy occurrences."""
    wanted = {a.lower() for a in addresses}
    found: dict[str, list[BusyInterval]] = {a: [] for a in wanted}
    for calendar in calendars:
        for occurrence, interval in event_busy(calendar, start, end, tz):
            for address in participants(occurrence) & wanted:
                found[address].append(interval)
    return found


def unknown(start: datetime, end: datetime) -> BusyInterval:
    """No access: the whole window is UNKNOWN, never silently free."""
    return BusyInterval(start, end, BusyKind.UNKNOWN)


def _span(event: Component, tz: ZoneInfo) -> tuple[datetime, datetime]:
    first = event.decoded("dtstart")
    last = event.decoded("dtend") if "dtend" in event else None
    if not isinstance(first, datetime):  # all-day: whole local days
        last = last if isinstance(last, date) and not isinstance(last, datetime) else first + timedelta(days=1)
        return _midnight(first, tz), _midnight(last, tz)
    begin = _aware(first, tz)
    return begin, _aware(last, tz) if isinstance(last, datetime) else begin


def _periods(line) -> list[tuple]:
    """(start, end or duration) of a FREEBUSY value (a vPeriod, or a list of them)."""
    value = getattr(line, "dts", None)
    if value is not None:
        return [p.dt for p in value]
    return [line.dt] if isinstance(getattr(line, "dt", None), tuple) else []


def _period_end(period: tuple, tz: ZoneInfo) -> datetime:
    begin, other = period
    return _aware(begin, tz) + other if isinstance(other, timedelta) else _aware(other, tz)


def _aware(moment: datetime, tz: ZoneInfo) -> datetime:
    """Floating times are local times of the service's zone."""
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tz)


def _clip(begin: datetime, finish: datetime, kind: BusyKind, start: datetime, end: datetime,
          tz: ZoneInfo) -> BusyInterval | None:
    begin, finish = max(begin, start), min(finish, end)
    if finish <= begin:
        return None
    return BusyInterval(begin.astimezone(tz), finish.astimezone(tz), kind)
