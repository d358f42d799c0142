"""Meetings booked by themselves: requests by mail, acute items, declines,
cooperation meetings twice a year."""

from __future__ import annotations

import email
import os
import email.policy
from datetime import date

import pytest
from icalendar import Calendar
from sqlalchemy import select

from scheduler.services import meetings
from scheduler.mail.folder import FolderSource
from scheduler.services.intake import Intake
from scheduler.store.tables import Mail
from tests.appkit import at, build, ingest, item_mail
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


def decline(uid: str, sender: str, attendee: str, mid: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: sparring@kommune.example\r\nSubject: Afvist: Netværksmøde\r\n"
        f"Message-ID: <{mid}@kommune.example>\r\nContent-Type: text/calendar; charset=utf-8; method=REPLY\r\n\r\n"
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20270129T080000Z\r\nDTSTART:20270201T080000Z\r\nSEQUENCE:0\r\n"
        f"ATTENDEE;PARTSTAT=DECLINED:mailto:{attendee}\r\nORGANIZER:mailto:sparring@kommune.example\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()


def booked_network_meeting(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-28T08:00", monkeypatch)
    body = f"Deltagere: {B}\r\nEksterne: mor@example.org\r\nPeriode: 2027-02-01 - 2027-02-05\r\nVarighed: 60\r\n"
    ingest(app, request_mail("Netværksmøde", body), "2027-01-28T08:00")
    dispatcher.run_once(limit=100)
    (_, first), = [(m, e) for m, e in events(sent(tmp_path)) if m == "REQUEST"]
    busy_file(tmp_path, B, ("20270201T090000", "20270201T100000"))  # B's calendar now has it busy
    return app, dispatcher, str(first["UID"])


def requests_for(tmp_path, uid: str) -> list:
    return [e for m, e in events(sent(tmp_path)) if m == "REQUEST" and str(e["UID"]) == uid]


def test_decline_by_required_participant_rebooks_and_tells_everyone(tmp_path, monkeypatch):
    app, dispatcher, uid = booked_network_meeting(tmp_path, monkeypatch)
    outcome = ingest(app, decline(uid, f"Bo <{B.upper()}>", B, "decline1"), "2027-01-29T09:00")
    assert outcome.outcome == "ignored" and outcome.extra["code"] == "calendar_reply"
    dispatcher.run_once(limit=100)
    updates = requests_for(tmp_path, uid)
    assert len(updates) == 2
    assert int(updates[1]["SEQUENCE"]) == 1
    assert updates[1].decoded("DTSTART") != updates[0].decoded("DTSTART")


@pytest.mark.parametrize("sender, attendee", [
    ("evil@x.org", B),  # an outsider naming a real attendee
    ("mor@example.org", "mor@example.org"),  # an attendee outside the allowlist
    ("c@kommune.example", B),  # allowlisted, not an attendee, naming one
    ("c@kommune.example", "c@kommune.example"),  # allowlisted, not an attendee, as itself
    (A, B),  # an attendee declining for another one
], ids=["outsider", "external-attendee", "allowlisted-naming-attendee", "allowlisted-itself", "attendee-for-other"])
def test_a_forged_decline_moves_nothing_and_is_recorded(tmp_path, monkeypatch, caplog, sender, attendee):
    app, dispatcher, uid = booked_network_meeting(tmp_path, monkeypatch)
    outcome = ingest(app, decline(uid, sender, attendee, "forged"), "2027-01-29T09:00")
    assert outcome.outcome == "ignored" and outcome.extra["code"] == "reply_not_attendee"
    with app.transaction() as repo:
        assert repo.db.scalar(select(Mail.reason_code).where(Mail.outcome == "ignored")) == "reply_not_attendee"
    dispatcher.run_once(limit=100)
    assert len(requests_for(tmp_path, uid)) == 1, "not rebooked"
    logged = [r.getMessage() for r in caplog.records if "calendar reply ignored" in r.getMessage()]
    assert len(logged) == 1 and "@" not in logged[0]


def test_a_forged_decline_does_not_move_an_acute_meeting(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-05T09:00", monkeypatch)
    ingest(app, item_mail("150303-4321", "ak", subject="AKUT"), "2027-01-05T09:00")
    dispatcher.run_once(limit=100)
    (_, meeting), = acute_meetings(tmp_path)
    outcome = ingest(app, decline(str(meeting["UID"]), "evil@x.org", "koordinator.unge@kommune.example", "f"),
                     "2027-01-05T09:30")
    assert outcome.extra["code"] == "reply_not_attendee"
    dispatcher.run_once(limit=100)
    assert len(acute_meetings(tmp_path)) == 1


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


def drop(inbox, name: str, raw: bytes, arrived: str):
    """A mail in the folder source, its mtime standing for its arrival."""
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_bytes(raw)
    moment = at(arrived).timestamp()
    os.utime(path, (moment, moment))


def acute_meetings(tmp_path):
    return [(m, e) for m, e in events(sent(tmp_path)) if str(e["SUMMARY"]) == "Akut sparring"]


def test_acute_item_withdrawn_in_the_same_batch_gets_no_meeting(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-05T09:00", monkeypatch)
    inbox = tmp_path / "inbox"
    drop(inbox, "1.eml", item_mail("150303-4321", "ak", subject="AKUT"), "2027-01-05T08:58")
    drop(inbox, "2.eml", item_mail("150303-4321", "wd", subject="Træk tilbage"), "2027-01-05T08:59")
    outcomes = Intake(app).run(FolderSource(inbox))
    assert [o.outcome for o in outcomes] == ["accepted", "withdrawn"]
    dispatcher.run_once(limit=100)
    assert [m for m, _ in acute_meetings(tmp_path)] in ([], ["REQUEST", "CANCEL"])
    with app.transaction() as repo:
        assert [status for _, status in repo.bookings_for("item:1")] in ([], ["cancelled"])


def test_acute_item_withdrawn_later_cancels_its_meeting_as_it_was(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-05T09:00", monkeypatch)
    inbox = tmp_path / "inbox"
    drop(inbox, "1.eml", item_mail("150303-4321", "ak", subject="AKUT"), "2027-01-05T08:58")
    Intake(app).run(FolderSource(inbox))
    dispatcher.run_once(limit=100)
    app.clock.set(at("2027-01-05T10:00"))
    drop(inbox, "2.eml", item_mail("150303-4321", "wd", subject="Træk tilbage"), "2027-01-05T09:59")
    assert [o.outcome for o in Intake(app).run(FolderSource(inbox))] == ["withdrawn"]
    dispatcher.run_once(limit=100)
    (request_method, request), (method, cancel) = acute_meetings(tmp_path)
    assert (request_method, method) == ("REQUEST", "CANCEL")
    assert str(cancel["UID"]) == str(request["UID"]) and int(cancel["SEQUENCE"]) > int(request["SEQUENCE"])
    assert cancel.decoded("DTSTART") == request.decoded("DTSTART")
    with app.transaction() as repo:
        assert [status for _, status in repo.bookings_for("item:1")] == ["cancelled"]


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
