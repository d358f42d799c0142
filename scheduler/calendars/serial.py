"""``Meeting`` to and from JSON, for outbox entries (versioned, like
APScheduler's trigger state: a stored entry says which format it is in)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from scheduler.model import Attendee, Meeting, Recurrence

VERSION = 1


def meeting_to_json(meeting: Meeting) -> dict[str, Any]:
    rec = meeting.recurrence
    return {
        "version": VERSION,
        "uid": meeting.uid,
        "summary": meeting.summary,
        "start": meeting.start.isoformat(),
        "end": meeting.end.isoformat(),
        "organizer": meeting.organizer,
        "organizer_name": meeting.organizer_name,
        "attendees": [[a.address, a.name, a.required] for a in meeting.attendees],
        "description": meeting.description,
        "location": meeting.location,
        "sequence": meeting.sequence,
        "cancelled": meeting.cancelled,
        "recurrence": None if rec is None else {
            "interval": rec.interval,
            "until": rec.until.isoformat() if rec.until else None,
            "exdates": [d.isoformat() for d in rec.exdates],
        },
        "recurrence_id": meeting.recurrence_id.isoformat() if meeting.recurrence_id else None,
        "categories": list(meeting.categories),
    }


def meeting_from_json(data: dict[str, Any]) -> Meeting:
    if data.get("version") != VERSION:
        raise ValueError(f"unknown meeting format version {data.get('version')!r}")
    rec = data["recurrence"]
    return Meeting(
        uid=data["uid"],
        summary=data["summary"],
        start=datetime.fromisoformat(data["start"]),
        end=datetime.fromisoformat(data["end"]),
        organizer=data["organizer"],
        organizer_name=data["organizer_name"],
        attendees=tuple(Attendee(a, n, r) for a, n, r in data["attendees"]),
        description=data["description"],
        location=data["location"],
        sequence=data["sequence"],
        cancelled=data["cancelled"],
        recurrence=None if rec is None else Recurrence(
            interval=rec["interval"],
            until=date.fromisoformat(rec["until"]) if rec["until"] else None,
            exdates=tuple(datetime.fromisoformat(d) for d in rec["exdates"]),
        ),
        recurrence_id=datetime.fromisoformat(data["recurrence_id"]) if data["recurrence_id"] else None,
        categories=tuple(data["categories"]),
    )
