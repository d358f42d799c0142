"""The use cases over a real SQLite store and the local folders."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import replace
from datetime import date, timedelta

import recurring_ical_events
from icalendar import Calendar
from sqlalchemy import select, update

from scheduler.ports import OutgoingMail, PermanentError, TransientError
from scheduler.services import deadlines
from scheduler.services.dispatch import retry_failed
from scheduler.services.publishing import publish_horizon
from scheduler.config import load_config
from scheduler.logs import CPR_SHAPE
from scheduler.store.tables import CalendarEvent, Item, OutboxEntry
from tests.appkit import CONFIG, at, build, ingest, item_mail
from tests.daemonkit import drop_mail


def outbox_messages(tmp_path):
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted((tmp_path / "outbox").glob("*.eml"))]


def calendar_part(message) -> Calendar | None:
    for part in message.walk():
        if part.get_content_type() == "text/calendar":
            return Calendar.from_ical(part.get_payload(decode=True))
    return None


def series_messages(tmp_path, uid_part: str = "sparring-series-unge"):
    """(METHOD, VEVENT) of every invitation sent for the weekly series, in order."""
    found = []
    for message in outbox_messages(tmp_path):
        cal = calendar_part(message)
        if cal is not None:
            found += [(str(cal["METHOD"]), e) for e in cal.walk("VEVENT") if uid_part in str(e["UID"])]
    return found


def listed(calendar, first, last) -> list:
    """Occurrence starts as an independent reader (recurring-ical-events) lists them."""
    return sorted(e.decoded("DTSTART") for e in recurring_ical_events.of(calendar).between(first, last))


def open_sessions(app, first: date, last: date) -> list:
    return [s.start for s in app.planner.sessions(first, last, "unge") if s.planned]


def test_publish_weekly_series_with_known_closed_days_as_exdates_and_monthly_singles(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2026-12-01T08:00", monkeypatch)
    publish_horizon(app)
    dispatcher.run_once(limit=1000)
    sent = series_messages(tmp_path)
    assert [m for m, _ in sent] == ["REQUEST"], "one recurring event; nothing to cancel yet"
    (_, series), = sent
    assert "RRULE" in series
    lines = series.get("EXDATE")
    exdates = {d.dt for line in (lines if isinstance(lines, list) else [lines]) for d in line.dts}
    assert {at("2026-12-24T10:00"), at("2026-12-31T10:00")} <= exdates
    request = Calendar()
    request.add_component(series)
    assert listed(request, at("2026-12-01T00:00"), at("2027-06-01T00:00")) == \
        open_sessions(app, date(2026, 12, 1), date(2027, 5, 31))
    invitations = [calendar_part(m) for m in outbox_messages(tmp_path) if calendar_part(m)]
    monthly = [c for c in invitations if "sparring-session-voksne" in str(c.walk("VEVENT")[0]["UID"])]
    assert len(monthly) >= 5 and all(len(c.walk("VEVENT")) == 1 for c in monthly)
    # publishing again changes nothing: no new mails
    before = len(list((tmp_path / "outbox").iterdir()))
    publish_horizon(app)
    dispatcher.run_once(limit=1000)
    assert len(list((tmp_path / "outbox").iterdir())) == before


def test_a_closed_day_learned_later_is_a_later_cancel_and_leaves_the_calendar_file(tmp_path, monkeypatch):
    config = load_config(CONFIG)
    config = config.model_copy(update={"calendar": config.calendar.model_copy(update={"horizon_months": 1})})
    app, dispatcher = build(tmp_path, "2026-12-01T08:00", monkeypatch, config=config)
    publish_horizon(app)  # up to 1 January: Maundy Thursday (25 March) is not known yet
    dispatcher.run_once(limit=1000)
    app.clock.set(at("2027-03-01T08:00"))
    publish_horizon(app)
    dispatcher.run_once(limit=1000)
    sent = series_messages(tmp_path)
    assert [m for m, _ in sent] == ["REQUEST", "CANCEL"]
    (_, series), (_, cancel) = sent
    assert cancel.decoded("RECURRENCE-ID") == at("2027-03-25T10:00") == cancel.decoded("DTSTART")
    assert int(cancel["SEQUENCE"]) > int(series["SEQUENCE"])
    assert cancel.decoded("DTSTAMP") > series.decoded("DTSTAMP"), "DTSTAMP: the moment it leaves"
    stored = Calendar.from_ical((tmp_path / "calendar" / "sparring-series-unge@kommune.example.ics").read_bytes())
    assert [str(e["STATUS"]) for e in stored.walk("VEVENT")] == ["CONFIRMED"], "no cancelled override"
    assert listed(stored, at("2026-12-01T00:00"), at("2027-04-01T00:00")) == \
        open_sessions(app, date(2026, 12, 1), date(2027, 3, 31))
    # a later change of the series is later than the cancel, and keeps it excluded
    app.series["unge"] = replace(app.series["unge"], location="Mødelokale 3, Rådhuset")
    publish_horizon(app)
    dispatcher.run_once(limit=1000)
    (method, changed), = series_messages(tmp_path)[2:]
    assert method == "REQUEST" and int(changed["SEQUENCE"]) > int(cancel["SEQUENCE"])
    request = Calendar()
    request.add_component(changed)
    assert at("2027-03-25T10:00") not in listed(request, at("2027-03-01T00:00"), at("2027-04-01T00:00"))


def test_acute_bump_updates_invitations_with_higher_sequence(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    cprs = ["150303-4321", "110698-2345", "0507015555", "010101-4001", "020202-4002", "030303-4003"]
    for n, cpr in enumerate(cprs):
        assert ingest(app, item_mail(cpr, f"m{n}"), f"2027-01-04T08:0{n}").outcome == "accepted"
    acute = ingest(app, item_mail("040404-4004", "acute", subject="AKUT sparring"), "2027-01-05T09:00")
    assert acute.outcome == "accepted" and acute.acute
    dispatcher.run_once(limit=1000)
    messages = outbox_messages(tmp_path)
    bumped = [m for m in messages if m["Subject"] and "Flyttet" in m["Subject"]]
    assert len(bumped) == 1
    updates = [calendar_part(m) for m in messages if calendar_part(m)]
    sequences = {}
    for cal in updates:
        (event,) = cal.walk("VEVENT")
        sequences.setdefault(str(event["UID"]), []).append(int(event.get("SEQUENCE", 0)))
    assert any(seq == [0, 1] for seq in sequences.values()), sequences


def test_withdrawal_cancels_the_slot_invitation(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
    out = ingest(app, item_mail("150303-4321", "w", subject="Træk tilbage"), "2027-01-05T08:00")
    assert out.outcome == "withdrawn"
    assert out.as_json()["session_start"] == "2027-01-07T10:00:00+01:00", "local time, as the other outcomes"
    dispatcher.run_once(limit=100)
    cancels = [calendar_part(m) for m in outbox_messages(tmp_path)
               if calendar_part(m) and str(calendar_part(m)["METHOD"]) == "CANCEL"]
    assert len(cancels) == 1


def test_a_series_sent_before_the_meeting_was_kept_still_gets_later_closed_days_cancelled(tmp_path, monkeypatch):
    config = load_config(CONFIG)
    config = config.model_copy(update={"calendar": config.calendar.model_copy(update={"horizon_months": 1})})
    app, dispatcher = build(tmp_path, "2026-12-01T08:00", monkeypatch, config=config)
    publish_horizon(app)
    with app.transaction() as repo:  # as before migration 0003
        repo.db.execute(update(CalendarEvent).values(meeting_enc=None))
    app.clock.set(at("2027-03-01T08:00"))
    publish_horizon(app)
    dispatcher.run_once(limit=1000)
    assert [(m, e.decoded("DTSTART")) for m, e in series_messages(tmp_path)][1:] == \
        [("CANCEL", at("2027-03-25T10:00"))]


def invitations_for(tmp_path, sender: str) -> list[tuple[str, object, str]]:
    """(METHOD, VEVENT, subject) of the slot invitations mailed to ``sender``, in order."""
    found = []
    for message in outbox_messages(tmp_path):
        cal = calendar_part(message)
        if cal is not None and message["To"] == sender:
            found += [(str(cal["METHOD"]), e, str(message["Subject"])) for e in cal.walk("VEVENT")]
    return found


def assert_cancelled_as_sent(tmp_path, sender: str, time: str) -> None:
    (_, request, _), (method, cancel, subject) = invitations_for(tmp_path, sender)
    assert method == "CANCEL" and str(cancel["UID"]) == str(request["UID"])
    assert cancel.decoded("DTSTART") == request.decoded("DTSTART") == at(time)
    assert f"kl. {at(time):%H.%M}" in str(cancel["SUMMARY"]) and f"kl. {at(time):%H.%M}" in subject
    assert int(cancel["SEQUENCE"]) > int(request["SEQUENCE"])


def test_a_withdrawn_slot_is_cancelled_at_the_time_it_had(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
    ingest(app, item_mail("110698-2345", "b", sender="bo@kommune.example"), "2027-01-04T08:01")
    dispatcher.run_once(limit=100)
    out = ingest(app, item_mail("110698-2345", "w", subject="Træk tilbage", sender="bo@kommune.example"),
                 "2027-01-05T08:00")
    assert out.outcome == "withdrawn"
    dispatcher.run_once(limit=100)
    assert_cancelled_as_sent(tmp_path, "bo@kommune.example", "2027-01-07T10:10")


def test_a_replaced_slot_is_cancelled_at_the_time_it_had(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
    ingest(app, item_mail("110698-2345", "b", sender="bo@kommune.example"), "2027-01-04T08:01")
    ingest(app, item_mail("010101-4001", "c"), "2027-01-04T08:02")
    dispatcher.run_once(limit=100)
    # Bo sends the citizen again, before the deadline: the new item replaces the old one
    ingest(app, item_mail("110698-2345", "b2", sender="bo@kommune.example"), "2027-01-04T09:00")
    dispatcher.run_once(limit=100)
    sent = invitations_for(tmp_path, "bo@kommune.example")
    assert [m for m, _, _ in sent] == ["REQUEST", "CANCEL", "REQUEST"]
    old, cancel = sent[0][1], sent[1][1]
    assert str(cancel["UID"]) == str(old["UID"]) != str(sent[2][1]["UID"])
    assert cancel.decoded("DTSTART") == old.decoded("DTSTART") == at("2027-01-07T10:10")
    assert "kl. 10.10" in str(cancel["SUMMARY"]) and "kl. 10.10" in sent[1][2]


def test_an_empty_session_called_off_is_cancelled_as_it_was_published(tmp_path, monkeypatch):
    config = load_config(CONFIG)
    config = config.model_copy(update={"agenda": config.agenda.model_copy(update={"cancel_empty": True})})
    app, dispatcher = build(tmp_path, "2027-01-01T08:00", monkeypatch, config=config)
    publish_horizon(app)
    dispatcher.run_once(limit=1000)
    app.clock.set(at("2027-01-11T12:00"))
    assert deadlines.send_agenda(app, "voksne/2027-01-13")  # monthly: a single event
    app.clock.set(at("2027-01-11T12:00"))
    assert deadlines.send_agenda(app, "unge/2027-01-14")  # weekly: an occurrence of the series
    dispatcher.run_once(limit=1000)
    (_, single), (method, cancel) = series_messages(tmp_path, "sparring-session-voksne-2027-01-13")
    assert method == "CANCEL" and cancel.decoded("DTSTART") == single.decoded("DTSTART") == at("2027-01-13T14:00")
    (_, series), (method, occurrence) = series_messages(tmp_path)
    assert method == "CANCEL" and int(occurrence["SEQUENCE"]) > int(series["SEQUENCE"])
    assert occurrence.decoded("RECURRENCE-ID") == occurrence.decoded("DTSTART") == at("2027-01-14T10:00")
    publish_horizon(app)  # publishing again does not bring them back
    dispatcher.run_once(limit=1000)
    assert len(series_messages(tmp_path, "sparring-session-voksne-2027-01-13")) == 2
    assert len(series_messages(tmp_path)) == 2


def as_before_migration_0003(app) -> None:
    """Rows as the code before migration 0003 left them: row-id slot UIDs, no meeting as sent."""
    with app.transaction() as repo:
        for item in repo.db.scalars(select(Item)).all():
            row = repo.db.get(CalendarEvent, item.event_uid)
            if row is not None:
                row.uid, row.meeting_enc = f"sparring-slot-{item.id}@kommune.example", None
            item.event_uid = None


def test_a_slot_sent_before_the_meeting_was_kept_is_cancelled_at_its_place(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
    ingest(app, item_mail("110698-2345", "b"), "2027-01-04T08:01")
    ingest(app, item_mail("010101-4001", "c"), "2027-01-04T08:02")
    as_before_migration_0003(app)
    ingest(app, item_mail("110698-2345", "w", subject="Træk tilbage"), "2027-01-05T08:00")
    dispatcher.run_once(limit=100)
    cancels = [e for m, e, _ in invitations_for(tmp_path, "karen@kommune.example") if m == "CANCEL"]
    assert [str(e["UID"]) for e in cancels] == ["sparring-slot-2@kommune.example"]
    assert cancels[0].decoded("DTSTART") == at("2027-01-07T10:10")


def test_slot_uids_never_repeat_in_a_new_database(tmp_path, monkeypatch):
    uids = []
    for name in ("before-purge", "after-purge"):
        (tmp_path / name).mkdir()
        app, dispatcher = build(tmp_path / name, "2027-01-04T08:00", monkeypatch)
        ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
        dispatcher.run_once(limit=100)
        with app.transaction() as repo:
            assert repo.db.scalar(select(Item.id)) == 1  # the same row id in both
        (_, event, _), = invitations_for(tmp_path / name, "karen@kommune.example")
        uids.append(str(event["UID"]))
    assert uids[0] != uids[1]
    assert all(u.startswith("sparring-slot-") and u.endswith("@kommune.example") for u in uids)
    assert not any(CPR_SHAPE.search(u) for u in uids), "no digits that could read as a CPR number"


class FlakyTransport:
    def __init__(self, failures):
        self.failures = list(failures)
        self.sent: list[OutgoingMail] = []

    def send(self, mail):
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(mail)

    def close(self):
        pass


def test_outbox_retries_transient_with_backoff_then_sends(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    dispatcher.transport = FlakyTransport([TransientError("busy", retry_after=120)])
    ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
    first = dispatcher.run_once()
    assert first.retried == 1
    assert dispatcher.run_once().sent == 0, "not before the server's back-off"
    app.clock.advance(timedelta(seconds=121))
    assert dispatcher.run_once().sent >= 1
    assert [m.kind for m in dispatcher.transport.sent].count("receipt") == 1


def test_permanent_failure_is_reported_to_admin_and_can_be_retried(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    dispatcher.transport = FlakyTransport([PermanentError("550 no such user")])
    ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
    report = dispatcher.run_once()
    assert report.failed == 1
    dispatcher.run_once()
    admin = [m for m in dispatcher.transport.sent if "it-drift@kommune.example" in m.recipients]
    assert len(admin) == 1 and b"150303" not in admin[0].message
    assert [m.kind for m in dispatcher.transport.sent].count("receipt") == 0
    assert retry_failed(app) == 1
    dispatcher.run_once()
    assert [m.kind for m in dispatcher.transport.sent].count("receipt") == 1


def test_crash_after_claim_retries_once_more_never_lost(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
    with app.transaction() as repo:
        entry_id = repo.db.scalar(select(OutboxEntry.id).where(OutboxEntry.status == "pending").limit(1))
    assert dispatcher._claim(entry_id) is not None  # ... and the process dies here
    dispatcher.run_once()
    with app.transaction() as repo:
        assert repo.db.get(OutboxEntry, entry_id).status == "pending", "claimed: waits for its back-off"
    app.clock.advance(timedelta(minutes=5))
    dispatcher.run_once()
    with app.transaction() as repo:
        entry = repo.db.get(OutboxEntry, entry_id)
        assert entry.status == "done" and entry.attempts == 2


def test_agenda_sent_once_at_deadline_and_marked_late_when_missed(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
    app.clock.set(at("2027-01-04T12:00"))
    assert deadlines.send_agenda(app, "unge/2027-01-07")
    assert not deadlines.send_agenda(app, "unge/2027-01-07"), "only once"
    app.clock.set(at("2027-01-11T15:00"))  # down at the monthly deadline (11 Jan 12:00)
    assert deadlines.missed_agendas(app, at("2027-01-10T00:00")) == ["voksne/2027-01-13", "unge/2027-01-14"]
    assert deadlines.send_agenda(app, "voksne/2027-01-13")
    dispatcher.run_once(limit=100)
    agendas = [m for m in outbox_messages(tmp_path) if "Dagsorden" in (m["Subject"] or "")]
    subjects = sorted(str(m["Subject"]) for m in agendas)
    assert any("efter fristen" in s for s in subjects)
    to_coordinators = [m for m in agendas if "koordinator.unge@kommune.example" in m["To"]]
    assert len(to_coordinators) == 1
    caseworker = [m for m in agendas if m["To"] == "karen@kommune.example"]
    assert len(caseworker) == 1


def test_agenda_for_empty_session_says_so(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-11T12:00", monkeypatch)
    assert deadlines.send_agenda(app, "voksne/2027-01-13")
    dispatcher.run_once(limit=100)
    (agenda,) = [m for m in outbox_messages(tmp_path) if "Dagsorden" in (m["Subject"] or "")]
    text = "".join(p.get_payload(decode=True).decode() for p in agenda.walk() if not p.is_multipart())
    assert "ingen punkter" in text


def test_outbox_payloads_are_encrypted(tmp_path, monkeypatch):
    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    ingest(app, item_mail("150303-4321", "a", subject="AKUT"), "2027-01-04T08:00")
    with app.transaction() as repo:
        payloads = repo.db.scalars(select(OutboxEntry.payload_enc)).all()
    assert payloads and all(b"Angst" not in p and b"150303" not in p for p in payloads)


class CountingCalendar:
    sends_invitations = False

    def __init__(self):
        self.calls = []

    def put(self, meeting):
        self.calls.append(("put", [meeting.uid]))

    def put_many(self, meetings):
        self.calls.append(("put_many", [m.uid for m in meetings]))

    def cancel(self, meeting):
        self.calls.append(("cancel", [meeting.uid]))

    def free_busy(self, addresses, start, end):
        return {}

    def close(self):
        pass


def test_publishing_through_the_outbox_batches_calendar_writes(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2026-12-01T08:00", monkeypatch)
    dispatcher.calendar = CountingCalendar()
    publish_horizon(app)
    dispatcher.run_once(limit=1000)
    kinds = [kind for kind, _ in dispatcher.calendar.calls]
    written = [uid for _, uids in dispatcher.calendar.calls for uid in uids]
    assert kinds.count("put_many") >= 1
    assert len(dispatcher.calendar.calls) < len(written), "writes are batched"
    # order kept: every cancel comes after the put of its series
    series_uid = next(u for u in written if "series-unge" in u)
    first_put = written.index(series_uid)
    cancels = [n for n, (kind, _) in enumerate(dispatcher.calendar.calls) if kind == "cancel"]
    put_call = next(n for n, (_, uids) in enumerate(dispatcher.calendar.calls) if series_uid in uids)
    assert all(n > put_call for n in cancels) and first_put >= 0


def test_acute_item_after_the_deadline_sends_an_updated_agenda(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
    app.clock.set(at("2027-01-04T12:00"))
    assert deadlines.send_agenda(app, "unge/2027-01-07")
    ingest(app, item_mail("110698-2345", "ak", subject="AKUT", sender="ole@kommune.example"), "2027-01-06T13:45")
    dispatcher.run_once(limit=200)
    import email.policy

    agendas = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
               for p in sorted((tmp_path / "outbox").glob("*agenda*"))]
    updated = [m for m in agendas if str(m["Subject"]).startswith("Opdateret dagsorden")]
    assert {m["To"] for m in updated} >= {"koordinator.social@kommune.example, koordinator.unge@kommune.example"}
    text = updated[0].get_body(("plain",)).get_content()
    assert text.index("110698-xxxx") < text.index("150303-xxxx"), "the acute item comes first"


def test_deadline_reminder_once_to_the_series_list(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-03T12:00", monkeypatch)
    due = list(deadlines.reminders_due(app, at("2027-01-03T00:00"), at("2027-01-03T23:59")))
    assert [(s.key, m) for s, m in due] == [("unge/2027-01-07", at("2027-01-03T12:00"))]
    assert deadlines.send_reminder(app, "unge/2027-01-07")
    assert not deadlines.send_reminder(app, "unge/2027-01-07"), "once"
    dispatcher.run_once()
    (reminder,) = [p for p in (tmp_path / "outbox").glob("*reminder*")]
    text = reminder.read_text()
    assert "sagsbehandlere.unge@kommune.example" in text and "6 ledige tider" in text.replace("=\n", "")
    app.clock.set(at("2027-01-04T12:01"))
    assert not deadlines.send_reminder(app, "unge/2027-01-07"), "after the deadline: too late to remind"


def test_a_mail_that_breaks_is_quarantined_at_once_and_the_admin_told_once(tmp_path, monkeypatch):
    """Not left in the inbox to fail every round (under ``run --once`` for ever):
    rolled back alone, quarantined in the same round, the others taken in."""
    from scheduler.mail.folder import FolderSource
    from scheduler.services import intake as intake_module
    from scheduler.services.intake import Intake

    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, cpr in (("a.eml", "150303-4321"), ("b.eml", "110698-2345"), ("c.eml", "0507015555")):
        (inbox / name).write_bytes(item_mail(cpr, name))
    real = intake_module.parse_mail

    def breaking(raw, **kwargs):
        if b"110698" in raw:
            raise RuntimeError("a bug quoting the mail: 110698-2345")
        return real(raw, **kwargs)

    monkeypatch.setattr(intake_module, "parse_mail", breaking)
    outcomes = Intake(app).run(FolderSource(inbox))
    assert sorted((o.outcome, o.extra.get("code")) for o in outcomes) == [
        ("accepted", None), ("accepted", None), ("quarantined", "failed")]
    assert not list(inbox.glob("*.eml")) and (tmp_path / "quarantine" / "b.eml").exists()
    with app.transaction() as repo:
        assert len(repo.pending_sessions(app.now() - timedelta(days=400))) >= 1  # a and c are in
    dispatcher.run_once()
    alerts = [m for m in outbox_messages(tmp_path) if m["To"] == app.config.service.admin]
    assert len(alerts) == 1
    text = alerts[0].get_content()
    assert "RuntimeError" in text and "110698" not in text and "a bug" not in text


def test_sessions_from_a_day_match_the_planner_across_years(tmp_path, monkeypatch):
    """``App`` slices a wider plan; it must give what the planner gives."""
    from scheduler.services.context import HORIZON

    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    for day in (date(2026, 12, 31), date(2027, 1, 1), date(2027, 6, 30), date(2028, 2, 29), date(2029, 12, 24)):
        assert app._sessions_of_day(day) == app.planner.sessions(day, day + HORIZON)


def test_a_decision_that_breaks_after_writing_leaves_no_trace_and_the_rest_commit_once(tmp_path, monkeypatch):
    """The batch is first decided without savepoints; a failure there is rolled
    back whole and the batch decided again mail by mail."""
    from scheduler.mail.folder import FolderSource
    from scheduler.services.intake import Intake
    from scheduler.services.notices import Notices
    from scheduler.store.tables import Item, Mail

    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, cpr in (("a.eml", "150303-4321"), ("b.eml", "110698-2345"), ("c.eml", "0507015555")):
        (inbox / name).write_bytes(item_mail(cpr, name))
    real, calls = Notices.placed, []

    def breaking(self, item_id, placement, content):
        calls.append(content.cpr.digits)
        if content.cpr.digits == "1106982345":  # the item row is written by now
            raise RuntimeError("a bug")
        return real(self, item_id, placement, content)

    monkeypatch.setattr(Notices, "placed", breaking)
    outcomes = Intake(app).run(FolderSource(inbox))
    assert [o.outcome for o in outcomes] == ["accepted", "quarantined", "accepted"]
    assert calls.count("1503034321") == 2, "decided twice: straight through, then mail by mail"
    with app.transaction() as repo:
        assert len(repo.db.scalars(select(Item)).all()) == 2
        assert len(repo.db.scalars(select(Mail)).all()) == 2
        keys = repo.db.scalars(select(OutboxEntry.dedupe_key).where(OutboxEntry.kind == "receipt")).all()
        assert len(keys) == 2
    assert not list(inbox.glob("*.eml")) and (tmp_path / "quarantine" / "b.eml").exists()


def test_an_invitation_sent_again_keeps_its_message_id(tmp_path, monkeypatch):
    """Rendered at delivery, yet the same message each time: a re-send after a
    crash is recognisable (by mail clients and by the fault-injection test)."""
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    dispatcher.transport = FlakyTransport([])
    ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
    with app.transaction() as repo:
        entry = repo.db.scalars(select(OutboxEntry).where(OutboxEntry.kind == "invitation")).first()
        payload = repo.cipher.decrypt_json(entry.payload_enc, context="outbox.payload")
        recipients = entry.recipients
    dispatcher._deliver("invitation", recipients, payload)
    dispatcher._deliver("invitation", recipients, payload)
    first, again = (email.message_from_bytes(m.message) for m in dispatcher.transport.sent)
    assert first["Message-ID"] == again["Message-ID"] == payload["message_id"]
    assert first.get_content_type() == "multipart/alternative"


def test_a_simulation_marks_sent_entries_done_once_a_run(tmp_path, monkeypatch):
    """``durable=False`` (a rehearsal): one commit for a run's done marks,
    and all of them are committed when the run ends."""
    from scheduler.services.dispatch import Dispatcher

    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    rehearsal = Dispatcher(app, FlakyTransport([]), dispatcher.calendar, durable=False)
    ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
    commits = []
    real = app.connection
    monkeypatch.setattr(app, "connection", lambda: (commits.append(1), real())[1])
    report = rehearsal.run_once()
    assert report.sent >= 2 and len(commits) == 1
    with app.transaction() as repo:
        assert not repo.db.scalars(select(OutboxEntry).where(OutboxEntry.status == "pending")).all()


def test_an_invitation_that_cannot_be_rendered_fails_alone_and_is_reported(tmp_path, monkeypatch):
    from scheduler.services import dispatch as dispatch_module

    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    dispatcher.transport = FlakyTransport([])
    ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")

    def broken(*args, **kwargs):
        raise ValueError("a template bug")

    monkeypatch.setattr(dispatch_module, "invitation_mail", broken)
    report = dispatcher.run_once()
    assert report.failed == 1 and report.sent >= 1, "the receipt still went"
    with app.transaction() as repo:
        failed = repo.db.scalars(select(OutboxEntry).where(OutboxEntry.status == "failed")).one()
        assert failed.kind == "invitation" and failed.last_error == "PermanentError: the invitation could not be rendered (ValueError)"
    dispatcher.run_once()
    assert any("it-drift@kommune.example" in m.recipients for m in dispatcher.transport.sent), "the admin is told"


def test_an_unexpected_error_from_a_backend_is_retried_then_failed_never_raised(tmp_path, monkeypatch):
    """An adapter's unmapped exception stays with its entry: the run goes on,
    the entry backs off, and after the last attempt it is failed and reported."""
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    dispatcher.transport = FlakyTransport([])

    class Broken:
        def put(self, meeting):
            raise RuntimeError("150303-4321 in an adapter's message")

        put_many = cancel = put

    dispatcher.calendar = Broken()
    ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
    report = dispatcher.run_once()
    assert report.retried >= 1 and "receipt" in [m.kind for m in dispatcher.transport.sent]
    with app.transaction() as repo:
        errors = repo.db.scalars(select(OutboxEntry.last_error).where(OutboxEntry.kind == "calendar")).all()
    assert errors and set(errors) == {"RuntimeError (unexpected)"}, "the class only, never the text"
    for _ in range(dispatcher.max_attempts):
        app.clock.advance(timedelta(days=1))
        dispatcher.run_once()
    with app.transaction() as repo:
        statuses = repo.db.scalars(select(OutboxEntry.status).where(OutboxEntry.kind == "calendar")).all()
    assert set(statuses) == {"failed"}
    assert any("it-drift@kommune.example" in m.recipients for m in dispatcher.transport.sent)


def test_a_batch_writes_records_and_outbox_at_the_commit_and_drops_repeats(tmp_path, monkeypatch, db_url):
    """``defer_writes``: rows wait in the repository and go in one executemany
    per table just before the commit; the unique key still drops a repeat."""
    from sqlalchemy import func

    from scheduler.store.tables import Mail

    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch, db_url=db_url)
    with app.transaction() as repo:
        repo.begin_batch(["a@kommune.example"])
        repo.defer_writes()
        assert repo.enqueue("receipt", "receipt:k", ["a@kommune.example"], {"n": 1})
        assert repo.enqueue("receipt", "receipt:k", ["a@kommune.example"], {"n": 2})
        parsed = type("Parsed", (), {"message_id": "a@kommune.example", "sender": "a@kommune.example"})
        incoming = type("Incoming", (), {"ref": "a.eml", "received_at": app.now()})
        repo.begin_mail(parsed, incoming, app.now())
        repo.finish_mail("rejected", "too_many_lines")
        assert repo.db.scalar(select(func.count()).select_from(OutboxEntry)) == 0, "waits for the commit"
        assert repo.earlier("a@kommune.example") is not None, "the batch knows it before it is written"
    with app.transaction() as repo:
        rows = repo.db.scalars(select(OutboxEntry)).all()
        assert [repo.cipher.decrypt_json(r.payload_enc, context="outbox.payload") for r in rows] == [{"n": 1}]
        mail = repo.db.scalars(select(Mail)).one()
        assert (mail.outcome, mail.reason_code, mail.source_ref) == ("rejected", "too_many_lines", "a.eml")
        assert repo.earlier("a@kommune.example") is not None


def test_a_mail_the_parser_gives_up_on_is_rejected_with_a_receipt(tmp_path, monkeypatch):
    from tests.test_parse import BROKEN_MIME

    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    outcome = ingest(app, BROKEN_MIME, "2027-01-04T08:00")
    assert (outcome.outcome, outcome.extra["code"]) == ("rejected", "unreadable")
    assert "almindelig tekst" in outcome.reason
    dispatcher.run_once()
    [receipt] = outbox_messages(tmp_path)
    assert receipt["To"] == "anne.testesen@kommune.example" and receipt["In-Reply-To"] == "<broken@x>"


def test_a_batch_decides_as_one_mail_at_a_time_would_through_replacements_and_bumps(tmp_path, monkeypatch):
    """The batch keeps its cache of booked sessions current in place (an item
    replaced, one bumped on by an acute one): outcomes and items must be
    those of the same mails decided one by one, each reading the database."""
    import os

    from scheduler.mail.folder import FolderSource
    from scheduler.services.intake import Intake
    from scheduler.store.tables import Item

    cprs = ["150303-4321", "110698-2345", "050701-5555", "010203-4111", "020304-4222"]
    mails = [item_mail(cpr, f"m{n}") for n, cpr in enumerate(cprs)]  # 5 of the 6 slots of 7 Jan
    mails.append(item_mail("110698-2345", "again"))  # replaces m1 in place: still 5
    mails.append(item_mail("030405-4333", "sixth"))  # the last slot of 7 Jan
    mails.append(item_mail("040506-4444", "acute", subject="AKUT: sparring"))  # bumps "sixth" to 14 Jan
    mails.append(item_mail("030405-4333", "sixth-again"))  # replaces it there
    mails.append(item_mail("050607-4555", "late"))  # 7 Jan is full: 14 Jan
    results = {}
    for mode in ("batch", "single"):
        app, _ = build(tmp_path / mode, "2027-01-04T08:00", monkeypatch)
        if mode == "batch":
            inbox = tmp_path / mode / "inbox"
            inbox.mkdir()
            for n, raw in enumerate(mails):
                (inbox / f"{n:02d}.eml").write_bytes(raw)
                os.utime(inbox / f"{n:02d}.eml", (at("2027-01-04T07:00").timestamp() + n,) * 2)
            outcomes = Intake(app).run(FolderSource(inbox))
        else:
            outcomes = [ingest(app, raw, f"2027-01-04T07:00:{n:02d}") for n, raw in enumerate(mails)]
        with app.transaction() as repo:
            items = [(i.id, i.session_key, i.status) for i in repo.db.scalars(select(Item).order_by(Item.id))]
        results[mode] = [(o.outcome, o.series, o.session_start, o.acute) for o in outcomes], items
    assert results["batch"] == results["single"]
    outcomes, items = results["batch"]
    assert [o[0] for o in outcomes] == ["accepted"] * 8 + ["moved"] * 2
    assert [status for _, key, status in items if key == "unge/2027-01-14"] == ["replaced", "pending", "pending"]


def test_a_mail_handed_out_again_after_its_move_was_lost_goes_to_the_folder_of_its_decision(
        tmp_path, monkeypatch):
    """A crash between the commit and the move leaves decided mails in the
    inbox. Taken again, each is recognised by its Message-ID and filed where
    its first decision put it; a copy under another name is only ignored."""
    from scheduler.mail.folder import FolderSource
    from scheduler.services.intake import Intake

    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    inbox = tmp_path / "inbox"
    # Arrival (the mtime) on the test's timeline: before Monday's 12:00 deadline.
    arrived = at("2027-01-04T07:55")
    drop_mail(inbox, "a", item_mail("150303-4321", "a"), arrived)
    drop_mail(inbox, "b", item_mail("150303-4321", "b", sender="ukendt@evil.example"), arrived)
    drop_mail(inbox, "c", item_mail("320303-4321", "c"), arrived)  # no such date: rejected
    source = FolderSource(inbox)
    monkeypatch.setattr(source, "settle", lambda moves: None)  # the crash: nothing moved
    first = {o.message_id: o.outcome for o in Intake(app).run(source)}
    assert first == {"a@kommune.example": "accepted", "b@kommune.example": "quarantined",
                     "c@kommune.example": "rejected"}
    monkeypatch.undo()
    drop_mail(inbox, "z", item_mail("150303-4321", "a"), arrived)  # a second copy of a
    again = sorted((o.message_id, o.outcome, o.disposition.value) for o in Intake(app).run(FolderSource(inbox)))
    assert again == [("a@kommune.example", "duplicate", "ignored"), ("a@kommune.example", "duplicate", "processed"),
                     ("b@kommune.example", "duplicate", "quarantine"), ("c@kommune.example", "duplicate", "rejected")]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/*.eml")
                  if p.parent.name != "outbox") == [
        "ignored/z.eml", "processed/a.eml", "quarantine/b.eml", "rejected/c.eml"]


# -- issue 11: receipts name the batch's final slot, in local time, masked --


def _drop(inbox, name: str, raw: bytes, arrived: str) -> None:
    """A mail in the inbox whose mtime (its arrival) is ``arrived``, given in UTC."""
    import os
    from datetime import datetime

    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / name).write_bytes(raw)
    moment = datetime.fromisoformat(arrived).timestamp()
    os.utime(inbox / name, (moment, moment))


def _run_batch(app, tmp_path):
    from scheduler.mail.folder import FolderSource
    from scheduler.services.intake import Intake

    return Intake(app).run(FolderSource(tmp_path / "inbox"))


def _to(messages, address: str, prefix: str):
    return [m for m in messages if m["To"] == address and str(m["Subject"]).startswith(prefix)]


def _slot_line(receipt) -> str:
    text = receipt.get_body(("plain",)).get_content()
    return next(line for line in text.splitlines() if line.startswith("Din tid:"))


def _invited_start(messages, address: str):
    starts = [calendar_part(m).walk("VEVENT")[0].decoded("DTSTART") for m in messages
              if calendar_part(m) and m["To"] == address and str(calendar_part(m)["METHOD"]) == "REQUEST"]
    return starts[-1]


def _agenda_start(app, address: str):
    from scheduler.services.agenda import build_agenda

    with app.transaction() as repo:
        agenda = build_agenda(repo, app, app.session_by_key("unge/2027-01-07"), full_cpr=False)
    return next(line.start for line in agenda.lines if line.sender == address)


def _receipt_invitation_and_agenda_agree(app, dispatcher, tmp_path, slot: str) -> None:
    """Karen's receipt, her invitation's DTSTART and the agenda give one slot."""
    dispatcher.run_once(limit=200)
    messages = outbox_messages(tmp_path)
    (receipt,) = _to(messages, "karen@kommune.example", "Kvittering")
    invited, listed = _invited_start(messages, "karen@kommune.example"), _agenda_start(app, "karen@kommune.example")
    assert invited == listed == at(f"2027-01-07T{slot[:5].replace('.', ':')}")
    assert _slot_line(receipt).startswith(f"Din tid:    kl. {slot}")


def test_a_receipt_names_the_slot_an_acute_mail_later_in_the_batch_leaves_it(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T09:00", monkeypatch)
    inbox = tmp_path / "inbox"
    _drop(inbox, "a.eml", item_mail("150303-4321", "a"), "2027-01-04T07:00+00:00")
    _drop(inbox, "b.eml", item_mail("110698-2345", "b", subject="AKUT", sender="ole@kommune.example"),
          "2027-01-04T07:05+00:00")
    assert [o.outcome for o in _run_batch(app, tmp_path)] == ["accepted", "accepted"]
    _receipt_invitation_and_agenda_agree(app, dispatcher, tmp_path, "10.10-10.20")


def test_a_receipt_names_the_slot_a_withdrawal_later_in_the_batch_gives_it(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T09:00", monkeypatch)
    ingest(app, item_mail("110698-2345", "x", sender="ole@kommune.example"), "2027-01-04T08:00")
    inbox = tmp_path / "inbox"
    _drop(inbox, "a.eml", item_mail("150303-4321", "a"), "2027-01-04T08:10+00:00")
    withdrawal = item_mail("110698-2345", "w", subject="Træk tilbage", sender="ole@kommune.example")
    _drop(inbox, "w.eml", withdrawal, "2027-01-04T08:15+00:00")
    assert [o.outcome for o in _run_batch(app, tmp_path)] == ["accepted", "withdrawn"]
    _receipt_invitation_and_agenda_agree(app, dispatcher, tmp_path, "10.00-10.10")


def test_times_people_read_are_in_the_service_zone_whatever_the_arrival_zone(tmp_path, monkeypatch):
    """Arrival 11:30 UTC on a winter day is 12:30 in Copenhagen: after the deadline."""
    app, dispatcher = build(tmp_path, "2027-01-04T13:00", monkeypatch)
    _drop(tmp_path / "inbox", "late.eml", b"From: karen@kommune.example\r\nTo: sparring@kommune.example\r\n"
          b"Subject: Sparring\r\nMessage-ID: <late@kommune.example>\r\n\r\nHej\r\n", "2027-01-04T11:30+00:00")
    assert [o.outcome for o in _run_batch(app, tmp_path)] == ["rejected"]
    dispatcher.run_once()
    (receipt,) = _to(outbox_messages(tmp_path), "karen@kommune.example", "Afvist")
    assert "modtaget mandag den 4. januar 2027 kl. 12.30" in receipt.get_body(("plain",)).get_content()


def test_status_shows_every_time_in_the_service_zone(tmp_path, monkeypatch):
    from datetime import datetime, timezone

    from scheduler.services import lease
    from scheduler.services.status import status_lines

    app, dispatcher = build(tmp_path, "2027-01-04T13:00", monkeypatch)
    app.set_meta("last_intake", datetime(2027, 1, 4, 11, 30, tzinfo=timezone.utc).isoformat())
    assert lease.acquire(app, "host:1")
    until = lease.holder_of(app)[1].astimezone(app.tz)  # the lease runs on real time
    lines = status_lines(app)
    assert lines[0] == "now: 2027-01-04 13:00 (times in Europe/Copenhagen)"
    assert f"daemon: host:1 (lease until {until:%Y-%m-%d %H:%M:%S})" in lines
    assert "last intake: 2027-01-04 12:30" in lines
    assert not any("UTC" in line or "+00:00" in line for line in lines)


def _every_text(tmp_path) -> str:
    """Everything the outbox and the local calendar hold, decoded as a reader sees it."""
    texts = []
    for path in [*(tmp_path / "outbox").glob("*.eml"), *(tmp_path / "calendar").glob("*.ics")]:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        texts += [f"{name}: {value}" for name, value in message.items()]
        texts += [part.get_payload(decode=True).decode("utf-8") for part in message.walk()
                  if not part.is_multipart()]
    return "\n".join(texts)


def test_no_cpr_escapes_by_display_name_case_text_or_a_dash_of_another_kind(tmp_path, monkeypatch):
    """Issue 11, 14: the name "Karen 120502–4127" is not repeated, the bumped caseworker is not
    addressed by the acute sender's name, the acute alert masks a number in its text, and a
    meeting title with an en-dash CPR is refused and reaches no subject, SUMMARY or .ics file."""
    from tests.test_booking import A, B, busy_file
    from tests.test_meetings import request_mail

    app, dispatcher = build(tmp_path, "2027-01-28T08:00", monkeypatch)
    for n in range(6):  # a full session: the acute item bumps the latest
        mail = item_mail(f"0{n + 1}0101-400{n}", f"f{n}",
                         sender="karen@kommune.example").replace(b"From: karen@kommune.example",
                                                                 "From: Karen 120502\u20134127 <karen@kommune.example>".encode())
        assert ingest(app, mail, "2027-02-01T08:00").outcome == "accepted"
    acute = ("From: Ole Olsen <ole@kommune.example>\r\nTo: sparring@kommune.example\r\nSubject: AKUT\r\n"
             "Message-ID: <ak@kommune.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
             "CPR: 110698-2345\r\nHelbred: Bror (110698\u20132345) er indlagt.\r\n".encode())
    assert ingest(app, acute, "2027-02-01T09:00").outcome == "accepted"
    busy_file(tmp_path, A, ("20270201T090000", "20270201T120000"))
    busy_file(tmp_path, B, ("20270201T120000", "20270201T150000"))
    body = (f"Deltagere: {B}\r\nPeriode: 2027-02-08 - 2027-02-12\r\nTitel: Møde om 120502\u20134127\r\n")
    assert ingest(app, request_mail("Netværksmøde", body), "2027-02-01T09:10").outcome == "rejected"
    dispatcher.run_once(limit=500)
    seen = _every_text(tmp_path)
    assert not re.search(r"120502[^0-9x]{0,6}4127|110698[^0-9x]{0,6}2345", seen)
    assert "120502-xxxx" not in seen, "the display name is dropped, not repeated masked"
    bumped = [m for m in outbox_messages(tmp_path) if str(m["Subject"]).startswith("Flyttet")]
    assert bumped and all(m.get_body(("plain",)).get_content().startswith("Kære sagsbehandler") for m in bumped)
    receipts = [m for m in outbox_messages(tmp_path) if m["To"] == "karen@kommune.example"
                and str(m["Subject"]).startswith("Kvittering")]
    assert len(receipts) == 6 and all("Kære sagsbehandler" in m.get_body(("plain",)).get_content() for m in receipts)


def test_settled_mails_and_the_data_dir_are_private_and_purged_after_their_retention(tmp_path, monkeypatch):
    """Issue 11, 20: nothing of a mail lies in plaintext or readable by others in the data directory."""
    from scheduler.services.intake import Intake
    from scheduler.services.retention import purge
    from scheduler.wiring import make_source

    data = tmp_path / "var"
    app, dispatcher = build(data, "2027-01-04T09:00", monkeypatch)
    _drop(data / "inbox", "a.eml", item_mail("150303-4321", "a"), "2027-01-04T07:00+00:00")
    _drop(data / "inbox", "b.eml", item_mail("150303-432", "b"), "2027-01-04T07:01+00:00")  # rejected
    assert [o.outcome for o in Intake(app).run(make_source(app.config, data, cipher=app.cipher))] \
        == ["accepted", "rejected"]
    dispatcher.run_once(limit=100)
    mode = lambda path: path.stat().st_mode & 0o777  # noqa: E731
    assert mode(data) == 0o700 and mode(data / "sparring.db") == 0o600
    for name in ("processed", "rejected", "outbox", "calendar"):
        assert mode(data / name) == 0o700, name
        assert all(mode(path) == 0o600 for path in (data / name).iterdir()), name
    settled = [*(data / "processed").iterdir(), *(data / "rejected").iterdir()]
    assert sorted(p.name for p in settled) == ["a.eml.enc", "b.eml.enc"]
    assert not any(word in path.read_bytes() for path in settled for word in (b"150303", b"Angst", b"karen"))
    app.clock.set(at("2027-03-01T09:00"))  # the session of 7 January plus 30 days has passed
    assert purge(app).files >= 2 and not [*(data / "processed").iterdir(), *(data / "rejected").iterdir()]


def test_demo_says_its_key_sits_beside_the_data(tmp_path, monkeypatch, capsys):
    from scheduler.cli import main
    from tests.appkit import CONFIG

    monkeypatch.delenv("SPARRING_SECRET_KEY", raising=False)
    assert main(["--config", str(CONFIG), "--data-dir", str(tmp_path / "var"), "--demo", "status"]) == 0
    err = capsys.readouterr().err
    assert "beside the data" in err and "for trying sparring only" in err


def test_simulate_files_its_mails_sealed_too(tmp_path, monkeypatch, capsys):
    from scheduler.cli import main
    from scheduler.store.keys import new_key
    from tests.appkit import CONFIG

    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    raw = item_mail("150303-4321", "s1").replace(b"Subject:", b"Date: Mon, 04 Jan 2027 09:00:00 +0100\r\nSubject:")
    _drop(tmp_path / "inbox", "s1.eml", raw, "2027-01-04T08:00+00:00")
    assert main(["--config", str(CONFIG), "--data-dir", str(tmp_path), "simulate", "--from", "2027-01-01",
                 "--to", "2027-01-10"]) == 0
    (kept,) = (tmp_path / "processed").iterdir()
    assert kept.name == "s1.eml.enc" and b"150303" not in kept.read_bytes() and b"Angst" not in kept.read_bytes()
