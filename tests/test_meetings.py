"""Meetings booked by themselves: requests by mail, acute items, declines,
cooperation meetings twice a year."""

from __future__ import annotations

import email
import email.policy
from datetime import date

from icalendar import Calendar

from scheduler.services import meetings
from tests.appkit import build, ingest, item_mail
from tests.test_booking import A, B, busy_file


def sent(tmp_path):
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted((tmp_path / "outbox").glob("*.eml"))]


def events(messages):
    found = []
    for message in messages:
        for part in message.walk():
            if part.get_content_type() == "text/calendar":
                cal = Calendar.from_ical(part.get_payload(decode=True))
                found += [(str(cal["METHOD"]), e) for e in cal.walk("VEVENT")]
    return found


def request_mail(subject: str, body: str, mid: str = "req1") -> bytes:
    return (f"From: Anne <{A}>\r\nTo: sparring@kommune.example\r\nSubject: {subject}\r\n"
            f"Message-ID: <{mid}@kommune.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


def test_network_meeting_requested_by_mail_is_booked_and_answered(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-28T08:00", monkeypatch)
    busy_file(tmp_path, A, ("20270201T090000", "20270201T120000"))
    busy_file(tmp_path, B, ("20270201T120000", "20270201T150000"))
    body = (f"Hej\r\n\r\nDeltagere: {B}\r\nEksterne: mor@example.org\r\n"
            "Periode: 2027-02-01 - 2027-02-05\r\nVarighed: 60\r\n\r\nVH Anne\r\n")
    outcome = ingest(app, request_mail("Netværksmøde", body), "2027-01-28T08:00")
    assert outcome.outcome == "accepted" and outcome.series is None
    dispatcher.run_once(limit=100)
    messages = sent(tmp_path)
    receipt = next(m for m in messages if m["In-Reply-To"] == "<req1@kommune.example>")
    assert str(receipt["Subject"]).startswith("Booket")
    requests = [e for method, e in events(messages) if method == "REQUEST"]
    (meeting,) = requests
    assert meeting.decoded("DTSTART").isoformat() == "2027-02-02T09:00:00+01:00"
    attendees = {str(a).lower().removeprefix("mailto:") for a in meeting.get("ATTENDEE")}
    assert attendees == {A, B, "mor@example.org"}


def test_request_without_period_is_rejected_with_a_reason(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-28T08:00", monkeypatch)
    outcome = ingest(app, request_mail("Koordineringsmøde", f"Deltagere: {B}\r\n"), "2027-01-28T08:00")
    assert outcome.outcome == "rejected" and "Periode" in outcome.reason


def test_decline_by_required_participant_rebooks_and_tells_everyone(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-28T08:00", monkeypatch)
    body = f"Deltagere: {B}\r\nPeriode: 2027-02-01 - 2027-02-05\r\nVarighed: 60\r\n"
    ingest(app, request_mail("Netværksmøde", body), "2027-01-28T08:00")
    dispatcher.run_once(limit=100)
    (_, first), = [(m, e) for m, e in events(sent(tmp_path)) if m == "REQUEST"]
    uid = str(first["UID"])
    busy_file(tmp_path, B, ("20270201T090000", "20270201T100000"))  # B's calendar now has it busy
    reply = (
        f"From: {B}\r\nTo: sparring@kommune.example\r\nSubject: Afvist: Netværksmøde\r\n"
        "Message-ID: <decline1@kommune.example>\r\nContent-Type: text/calendar; charset=utf-8; method=REPLY\r\n\r\n"
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20270129T080000Z\r\nDTSTART:20270201T080000Z\r\nSEQUENCE:0\r\n"
        f"ATTENDEE;PARTSTAT=DECLINED:mailto:{B}\r\nORGANIZER:mailto:sparring@kommune.example\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()
    assert ingest(app, reply, "2027-01-29T09:00").outcome == "ignored"
    dispatcher.run_once(limit=100)
    updates = [e for m, e in events(sent(tmp_path)) if m == "REQUEST" and str(e["UID"]) == uid]
    assert len(updates) == 2
    assert int(updates[1]["SEQUENCE"]) == 1
    assert updates[1].decoded("DTSTART") != updates[0].decoded("DTSTART")


def test_acute_item_gets_a_meeting_within_two_working_days(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-05T09:00", monkeypatch)
    ingest(app, item_mail("150303-4321", "ak", subject="AKUT"), "2027-01-05T09:00")
    dispatcher.run_once(limit=100)
    acute = [e for m, e in events(sent(tmp_path)) if str(e["SUMMARY"]) == "Akut sparring"]
    assert len(acute) == 1
    start = acute[0].decoded("DTSTART")
    assert date(2027, 1, 5) <= start.date() <= date(2027, 1, 7)
    assert (acute[0].decoded("DTEND") - start).seconds == 20 * 60
    attendees = {str(a).lower().removeprefix("mailto:") for a in acute[0].get("ATTENDEE")}
    assert "karen@kommune.example" in attendees and "koordinator.unge@kommune.example" in attendees


def test_acute_item_without_common_time_alerts_coordinators(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-05T09:00", monkeypatch)
    busy_file(tmp_path, "karen@kommune.example", ("20270105T000000", "20270109T000000"))
    ingest(app, item_mail("150303-4321", "ak", subject="AKUT"), "2027-01-05T09:00")
    dispatcher.run_once(limit=100)
    alerts = [m for m in sent(tmp_path) if "ingen fælles tid" in str(m["Subject"])]
    assert len(alerts) == 1 and "koordinator.social@kommune.example" in alerts[0]["To"]


def test_cooperation_windows_due_six_weeks_ahead(tmp_path, monkeypatch):
    app, _ = build(tmp_path, "2027-01-10T08:00", monkeypatch)
    assert meetings.due_windows(app, date(2027, 1, 10)) == []
    assert [r for r, _, _ in meetings.due_windows(app, date(2027, 1, 18))] == ["cooperation:2027-0"]
    assert [r for r, _, _ in meetings.due_windows(app, date(2027, 8, 1))] == ["cooperation:2027-1"]


def test_cooperation_booked_once_per_window(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-20T08:00", monkeypatch)
    assert meetings.book_cooperation(app) == ["cooperation:2027-0"]
    assert meetings.book_cooperation(app) == []
    dispatcher.run_once(limit=100)
    (coop,) = [e for m, e in events(sent(tmp_path)) if "Samarbejdsmøde" in str(e["SUMMARY"])]
    start = coop.decoded("DTSTART")
    assert date(2027, 3, 1) <= start.date() <= date(2027, 4, 30)
    assert (coop.decoded("DTEND") - start).seconds == 2 * 3600


def test_cooperation_without_slot_tells_organiser_once(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-20T08:00", monkeypatch)
    busy_file(tmp_path, "repr.job@kommune.example", ("20270101T000000", "20271231T000000"))
    assert meetings.book_cooperation(app) == []
    assert meetings.book_cooperation(app) == []
    dispatcher.run_once(limit=100)
    notices = [m for m in sent(tmp_path) if "Ingen fælles tid" in str(m["Subject"])]
    assert len(notices) == 1 and notices[0]["To"] == "koordinator.social@kommune.example"


def test_a_request_whose_title_holds_a_cpr_in_any_form_is_refused_in_one_sentence(tmp_path, monkeypatch):
    """Issue 11, 14 and 15: the title goes into subjects and every attendee's calendar."""
    app, dispatcher = build(tmp_path, "2027-01-28T08:00", monkeypatch)
    for n, title in enumerate(["Møde om 120502\u20134127", "Møde om 120502 4127", "Møde\x0bom\x1bforløbet"]):
        body = f"Deltagere: {B}\r\nPeriode: 2027-02-01 - 2027-02-05\r\nTitel: {title}\r\n"
        outcome = ingest(app, request_mail("Netværksmøde", body, mid=f"t{n}"), "2027-01-28T08:00")
        assert outcome.outcome == "rejected" and "Titlen" in outcome.reason and "4127" not in outcome.reason
    dispatcher.run_once(limit=100)
    assert not events(sent(tmp_path)) and not list((tmp_path / "calendar").glob("*.ics"))
