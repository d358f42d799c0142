"""iTIP invitation and cancellation mails (RFC 6047), pure.

The message is multipart/alternative: text/plain and text/html from
``templates/<language>/invitation.*.j2``, then
``text/calendar; charset=UTF-8; method=REQUEST|CANCEL`` with the same
METHOD inside, which is what makes Outlook show Accept/Decline buttons.
It carries ``Auto-Submitted`` (no auto-replies to it), but unlike other
mails from sparring it does not ask Exchange to suppress *all* responses:
replies to invitations (a decline) must come back.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from email.message import Message
from email.mime.base import MIMEBase
from typing import Literal
from zoneinfo import ZoneInfo

from scheduler.calendars.ical import to_ical
from scheduler.mail.compose import text_mail
from scheduler.model import Meeting
from scheduler.render import render, render_mail


def invitation_mail(
    meeting: Meeting,
    method: Literal["REQUEST", "CANCEL"],
    *,
    sender: str,
    sender_name: str,
    recipients: Sequence[str],
    language: str = "da",
    tz: ZoneInfo,
    stamp: datetime,
    message_id: str | None = None,
) -> Message:
    """The mail inviting ``recipients`` to ``meeting`` (or cancelling it);
    ``message_id`` keeps a re-sent invitation recognisable as the same."""
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError(f"an invitation is a REQUEST or a CANCEL, not {method!r}")
    if not recipients:
        raise ValueError("an invitation needs at least one recipient")
    ics = to_ical([meeting], method, tz, stamp=stamp)
    context = _context(meeting, method, sender_name, tz)
    subject, body = render_mail("invitation.txt.j2", language, tz=tz, **context)
    html = render("invitation.html.j2", language, tz=tz, **context)
    message = text_mail(
        sender=sender,
        sender_name=sender_name,
        to=list(recipients),
        subject=subject,
        body=body,
        sent_at=stamp,
        html=html,
        language=language,
        message_id=message_id,
    )
    # Keep delivery reports and meeting responses; stop out-of-office replies.
    message.replace_header("X-Auto-Response-Suppress", "OOF, AutoReply")
    message["Content-Class"] = "urn:content-classes:calendarmessage"
    # base64 keeps the CRLF line folding of iCalendar intact; charset=UTF-8 in
    # capitals, as Outlook's own invitations write it.
    calendar = MIMEBase("text", "calendar", charset="UTF-8", method=method)
    calendar.set_payload(base64.encodebytes(ics).decode("ascii"))
    calendar["Content-Transfer-Encoding"] = "base64"
    message.attach(calendar)
    return message


def _context(meeting: Meeting, method: str, forum_name: str, tz: ZoneInfo) -> dict[str, object]:
    rule = meeting.recurrence
    return {
        "summary": meeting.summary,
        "location": meeting.location,
        "description": meeting.description,
        "start": meeting.start.astimezone(tz),
        "end": meeting.end.astimezone(tz),
        "cancelled": method == "CANCEL" or meeting.cancelled,
        "updated": meeting.sequence > 0,
        "occurrence": meeting.recurrence_id is not None,
        "recurring": rule is not None and meeting.recurrence_id is None,
        "interval": rule.interval if rule else 1,
        "until": rule.until if rule else None,
        "forum_name": forum_name,
    }
