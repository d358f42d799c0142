"""Meetings as Microsoft Graph event JSON, and back: pure functions, no I/O.

Times go out as ``dateTimeTimeZone`` in the service's zone under its
Windows name (Graph's own examples use "Pacific Standard Time"), mapped
from the IANA name by tzlocal's table, which is generated from CLDR's
windowsZones.xml: not a table of ours.

Our stable key on an event is a single-value extended property holding
the meeting's UID (``UID_PROPERTY``), which Graph can filter on, unlike
``iCalUId`` (Exchange makes that one up). ``transactionId`` on create is
derived from UID and SEQUENCE, so a create repeated after a lost answer
is recognised by Graph, while a later create of the same UID (after a
cancellation) is not mistaken for it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone, tzinfo
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tzlocal.windows_tz import tz_win, win_tz

from scheduler.model import Meeting

# A GUID of ours (the property set) and a name: Exchange's named-property form.
UID_PROPERTY = "String {87c93791-4f86-416b-950a-9728321c6080} Name SparringUid"
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TRANSACTIONS = uuid.UUID("87c93791-4f86-416b-950a-9728321c6080")


def windows_zone(tz: tzinfo) -> str:
    """The Windows name of an IANA zone ("Europe/Copenhagen" -> "Romance Standard Time")."""
    key = getattr(tz, "key", None) or str(tz)
    name = tz_win.get(key)
    if name is None:
        raise ValueError(f"the time zone {key} has no Windows name that Exchange Online knows")
    return name


def zone_of(name: str) -> tzinfo:
    """A zone named the Windows way (as Graph answers) or the IANA way."""
    if name.upper() in ("UTC", "ETC/UTC", "Z"):
        return timezone.utc
    try:
        return ZoneInfo(win_tz.get(name, name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"Graph answered with an unknown time zone {name!r}") from None


def graph_time(moment: datetime, tz: tzinfo) -> dict:
    """``moment`` as local wall time of ``tz`` with the zone's Windows name."""
    local = moment.astimezone(tz)
    return {"dateTime": local.replace(tzinfo=None).isoformat(timespec="seconds"), "timeZone": windows_zone(tz)}


def parse_time(value: dict | str, tz: tzinfo) -> datetime:
    """A ``dateTimeTimeZone`` (or a DateTimeOffset string) as an aware time in ``tz``."""
    if isinstance(value, str):
        moment = _iso(value)
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(tz)
    return _iso(value["dateTime"]).replace(tzinfo=zone_of(value.get("timeZone", "UTC"))).astimezone(tz)


def _iso(text: str) -> datetime:
    """Graph writes seven fractional digits; Python reads at most six."""
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        rest = digits[:6] + rest[len(digits):]
        text = f"{head}.{rest}"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def transaction_id(meeting: Meeting) -> str:
    """The same for a repeated create of one version of a meeting, new for the next."""
    return str(uuid.uuid5(_TRANSACTIONS, f"{meeting.uid}\n{meeting.sequence}"))


def event_json(meeting: Meeting, tz: tzinfo, *, create: bool = False) -> dict:
    """The event for POST (``create``) or PATCH: every field sparring owns."""
    body = occurrence_json(meeting, tz)
    body.update(sensitivity="private", categories=list(meeting.categories), allowNewTimeProposals=False)
    if meeting.recurrence is not None:
        body["recurrence"] = recurrence_json(meeting, tz)
    if create:
        body["singleValueExtendedProperties"] = [{"id": UID_PROPERTY, "value": meeting.uid}]
        body["transactionId"] = transaction_id(meeting)
    return body


def occurrence_json(meeting: Meeting, tz: tzinfo) -> dict:
    """What one occurrence of a series may change (PATCH on the instance)."""
    return {
        "subject": meeting.summary,
        "body": {"contentType": "text", "content": meeting.description},
        "start": graph_time(meeting.start, tz),
        "end": graph_time(meeting.end, tz),
        "location": {"displayName": meeting.location},
        "attendees": [{"emailAddress": {"address": a.address, **({"name": a.name} if a.name else {})},
                       "type": "required" if a.required else "optional"} for a in meeting.attendees],
    }


def recurrence_json(meeting: Meeting, tz: tzinfo) -> dict:
    """A weekly ``patternedRecurrence`` on the local weekday of the first start."""
    rule, local = meeting.recurrence, meeting.start.astimezone(tz)
    pattern = {"type": "weekly", "interval": rule.interval, "daysOfWeek": [_WEEKDAYS[local.weekday()]],
               "firstDayOfWeek": "monday"}
    span = {"startDate": local.date().isoformat(), "recurrenceTimeZone": windows_zone(tz)}
    if rule.until is not None:
        span.update(type="endDate", endDate=rule.until.isoformat())
    else:
        span["type"] = "noEnd"
    return {"pattern": pattern, "range": span}


def same_rule(ours: dict | None, theirs: dict | None) -> bool:
    """Whether Graph's ``recurrence`` already says what ours says (Graph adds
    fields of its own, and may spell values in another case)."""
    if ours is None or theirs is None:
        return ours is theirs
    for part in ("pattern", "range"):
        for key, value in ours[part].items():
            other = (theirs.get(part) or {}).get(key)
            if key == "daysOfWeek":
                value, other = sorted(value), sorted(other or [])
            if str(value).lower() != str(other).lower():
                return False
    return True


def lookup_url(mailbox: str, uid: str) -> str:
    """The events of ``mailbox`` carrying our UID property with value ``uid``."""
    condition = f"singleValueExtendedProperties/Any(ep: ep/id eq '{UID_PROPERTY}' and ep/value eq '{_quoted(uid)}')"
    return (f"/users/{quote(mailbox, safe='@')}/events?$filter={quote(condition, safe='')}"
            f"&$select=id,type,start,end,recurrence")


# Instances are listed by where they are now, so the window reaches as far as
# sparring moves a session off closed days (Easter: Thursday to Tuesday).
_MOVED_AT_MOST = timedelta(days=14)


def instances_url(mailbox: str, event_id: str, original_start: datetime) -> str:
    """The instances of a series around ``original_start`` (two weeks either side)."""
    moment = original_start.astimezone(timezone.utc)
    first, last = moment - _MOVED_AT_MOST, moment + _MOVED_AT_MOST
    return (f"/users/{quote(mailbox, safe='@')}/events/{quote(event_id, safe='=')}/instances"
            f"?startDateTime={_utc(first)}&endDateTime={_utc(last)}&$select=id,originalStart,start,end")


def occurrence_of(instances: list[dict], original_start: datetime) -> str | None:
    """The id of the instance whose ``originalStart`` is ``original_start``."""
    for instance in instances:
        started = instance.get("originalStart")
        if started and parse_time(started, timezone.utc) == original_start.astimezone(timezone.utc):
            return instance["id"]
    return None


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quoted(value: str) -> str:
    """An OData string literal's inside: single quotes doubled."""
    return value.replace("'", "''")
