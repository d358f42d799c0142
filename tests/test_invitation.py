"""Invitation mails, parsed back from bytes with email and icalendar: the
MIME structure and headers Outlook relies on, and the texts in both languages."""

from __future__ import annotations

import email
from dataclasses import replace
from datetime import date, datetime, timezone
from email import policy
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from scheduler.calendars.invitation import invitation_mail
from scheduler.model import Attendee, Meeting, Recurrence

TZ = ZoneInfo("Europe/Copenhagen")
STAMP = datetime(2027, 1, 4, 8, 30, tzinfo=timezone.utc)
FORUM = "sparring@kommune.example"
RECIPIENTS = ["anne@kommune.example", "bo@kommune.example"]
SLOT = Meeting(
    uid="sparring-slot-17@kommune.example", summary="Sparringsforum for unge: din tid kl. 10.10",
    start=datetime(2027, 6, 10, 10, 10, tzinfo=TZ), end=datetime(2027, 6, 10, 10, 20, tzinfo=TZ),
    organizer=FORUM, organizer_name="Sparringsforum", location="Mødelokale 2, Rådhuset",
    description="Din tid i sparringsforum.", attendees=tuple(Attendee(a) for a in RECIPIENTS),
)


def send(meeting: Meeting = SLOT, method: str = "REQUEST", language: str = "da") -> email.message.EmailMessage:
    """Build the mail and read it back the way a receiving client would."""
    message = invitation_mail(meeting, method, sender=FORUM, sender_name="Sparringsforum",
                              recipients=RECIPIENTS, language=language, tz=TZ, stamp=STAMP)
    return email.message_from_bytes(message.as_bytes(), policy=policy.default)


def subject(message) -> str:
    # A long subject is folded right after "Subject:"; unfolding leaves a space.
    return str(message["Subject"]).strip()


def parts(message) -> dict[str, email.message.EmailMessage]:
    return {part.get_content_type(): part for part in message.iter_parts()}


def calendar_of(message) -> Calendar:
    return Calendar.from_ical(parts(message)["text/calendar"].get_content())


def test_multipart_alternative_with_text_html_and_calendar_in_that_order():
    message = send()
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html", "text/calendar"]


@pytest.mark.parametrize("method", ["REQUEST", "CANCEL"])
def test_the_mime_method_equals_the_method_inside(method):
    message = send(method=method)
    part = parts(message)["text/calendar"]
    assert part.get_param("method") == method
    assert part.get_param("charset").lower() == "utf-8"
    assert calendar_of(message)["method"] == method


def test_headers_outlook_and_mail_servers_need():
    message = send()
    assert message["From"].addresses[0].addr_spec == FORUM
    assert message["From"].addresses[0].display_name == "Sparringsforum"
    assert [a.addr_spec for a in message["To"].addresses] == RECIPIENTS
    assert message["Date"].datetime == STAMP
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith("@kommune.example>")
    assert message["MIME-Version"] == "1.0"
    assert message["Auto-Submitted"] == "auto-generated"
    # replies to the invitation (a decline) must still reach the forum
    assert "All" not in message["X-Auto-Response-Suppress"]
    assert message["Content-Class"] == "urn:content-classes:calendarmessage"


def test_the_attached_calendar_is_the_itip_request():
    event = calendar_of(send()).walk("VEVENT")[0]
    assert str(event["uid"]) == SLOT.uid
    assert str(event["organizer"]) == f"mailto:{FORUM}"
    assert [str(a) for a in event["attendee"]] == [f"mailto:{a}" for a in RECIPIENTS]
    assert event.decoded("dtstamp") == STAMP
    assert str(event["summary"]) == SLOT.summary  # Danish letters survive the transfer encoding
    assert str(event["location"]) == "Mødelokale 2, Rådhuset"


def test_danish_by_default_with_local_time_and_place():
    message = send()
    assert subject(message) == f"Invitation: {SLOT.summary} torsdag den 10. juni 2027"
    assert message["Content-Language"] == "da"
    text = parts(message)["text/plain"].get_content()
    assert "torsdag den 10. juni 2027 kl. 10.10-10.20" in text
    assert "Mødelokale 2, Rådhuset" in text
    assert "Outlook" in text
    html = parts(message)["text/html"].get_content()
    assert "kl. 10.10-10.20" in html and "Mødelokale 2, Rådhuset" in html


def test_a_cancellation_says_so():
    message = send(replace(SLOT, sequence=1, cancelled=True), method="CANCEL")
    assert subject(message).startswith("Aflyst: ")
    assert "er aflyst" in parts(message)["text/plain"].get_content()
    assert calendar_of(message).walk("VEVENT")[0]["status"] == "CANCELLED"


def test_a_cancelled_occurrence_names_the_day_and_keeps_the_rest():
    occurrence = datetime(2027, 3, 4, 10, tzinfo=TZ)
    meeting = replace(SLOT, recurrence_id=occurrence, start=occurrence, end=occurrence.replace(hour=11),
                      sequence=1, cancelled=True)
    message = send(meeting, method="CANCEL")
    text = parts(message)["text/plain"].get_content()
    assert "torsdag den 4. marts 2027 kl. 10.00 er aflyst" in text and "øvrige møder" in text
    [event] = calendar_of(message).walk("VEVENT")
    assert event.decoded("recurrence-id") == occurrence


def test_an_update_and_a_series_are_described():
    series = replace(SLOT, sequence=2, recurrence=Recurrence(interval=1, until=date(2027, 6, 24)))
    text = parts(send(series))["text/plain"].get_content()
    assert "er ændret" in text
    assert "hver uge til og med torsdag den 24. juni 2027" in text
    assert subject(send(series)).startswith("Opdateret: ")


def test_english_when_asked():
    message = send(language="en")
    assert subject(message) == f"Invitation: {SLOT.summary} Thursday 10 June 2027"
    text = parts(message)["text/plain"].get_content()
    assert "Thursday 10 June 2027, 10:10-10:20" in text and "You are invited" in text
    assert subject(send(replace(SLOT, cancelled=True), "CANCEL", "en")).startswith("Cancelled: ")


def test_refuses_what_is_not_an_invitation():
    with pytest.raises(ValueError):
        invitation_mail(SLOT, "PUBLISH", sender=FORUM, sender_name="", recipients=RECIPIENTS, tz=TZ, stamp=STAMP)
    with pytest.raises(ValueError):
        invitation_mail(SLOT, "REQUEST", sender=FORUM, sender_name="", recipients=[], tz=TZ, stamp=STAMP)


def test_no_cpr_number_reaches_the_mail():
    """Masked where the meeting is made (issue 11, 14): the mail and its calendar part show DDMMYY-xxxx."""
    message = send(replace(SLOT, summary="Møde 010190\u20131234", description="Borger 0101901234"))
    parts = [subject(message)] + [part.get_payload(decode=True).decode("utf-8") for part in message.walk()
                                  if not part.is_multipart()]
    assert all("1234" not in text for text in parts)
    assert all("010190-xxxx" in text for text in parts)
