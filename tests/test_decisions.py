"""Decisions on the forum's items, by reply to the agenda and by command (issue 15)."""

from __future__ import annotations

import email
import email.policy
import json
import re

import pytest
from icalendar import Calendar

from scheduler.cli import main
from scheduler.planning import cases as rules
from scheduler.services import deadlines
from tests.appkit import at, build, ingest, item_mail

COORDINATOR = "koordinator.social@kommune.example"
KAREN, BO = "karen@kommune.example", "bo@kommune.example"
# Born 2000-2005: 21-26 at the sessions, the weekly series "unge" (Thursdays 10:00, 6 slots).
CPRS = ["1502004234", "0102034345", "0203044456", "0304054111", "0405014222", "0506024333", "0607044444"]
SESSION, NEXT = "unge/2027-01-14", "unge/2027-01-21"
CPR_ANYWHERE = re.compile(r"\d{6}-?\d{4}")


def messages(tmp_path):
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted((tmp_path / "outbox").glob("*.eml"))]


def body(message) -> str:
    part = message.get_body(("plain",))
    return part.get_content() if part else ""


def calendars(message) -> list[Calendar]:
    return [Calendar.from_ical(p.get_payload(decode=True)) for p in message.walk()
            if p.get_content_type() == "text/calendar"]


def reply(subject: str, text: str, mid: str, sender: str = COORDINATOR) -> bytes:
    return (f"From: {sender}\r\nTo: sparring@kommune.example\r\nSubject: Re: {subject}\r\n"
            f"Message-ID: <{mid}@kommune.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{text}\r\n\r\nVenlig hilsen\r\nKoordinatoren\r\n\r\n> DAGSORDEN\r\n> CPR: 150200-1234\r\n").encode()


@pytest.fixture
def forum(tmp_path, monkeypatch):
    """Three items for the session of 14 January 2027, its agenda sent: (app, dispatcher, subject)."""
    app, dispatcher = build(tmp_path, "2027-01-08T08:00", monkeypatch)
    for n, cpr in enumerate(CPRS[:3]):
        sender = BO if n == 1 else KAREN
        assert ingest(app, item_mail(cpr, f"item{n}", sender=sender), f"2027-01-08T{9 + n:02d}:00").outcome == "accepted"
    app.clock.set(at("2027-01-11T12:00"))
    assert deadlines.send_agenda(app, SESSION)
    dispatcher.run_once(limit=500)
    agenda = next(m for m in messages(tmp_path) if str(m["Subject"]).startswith("Dagsorden"))
    return app, dispatcher, str(agenda["Subject"])


def decide_by_mail(app, dispatcher, subject, text, mid, now="2027-01-14T11:30", sender=COORDINATOR):
    outcome = ingest(app, reply(subject, text, mid, sender), now)
    dispatcher.run_once(limit=500)
    return outcome


def answer_to(tmp_path, mid: str):
    return next(m for m in messages(tmp_path) if m["In-Reply-To"] == f"<{mid}@kommune.example>")


def test_the_agenda_numbers_the_slots_says_how_to_answer_and_carries_a_short_reference(forum, tmp_path):
    _, _, subject = forum
    assert subject.endswith("[SF unge 2027-01-14]")
    agenda = next(m for m in messages(tmp_path) if m["Subject"] == subject)
    text = body(agenda)
    assert "Punkt 1" in text and "Punkt 3" in text
    assert "<punkt>: opstart" in text and "<punkt>: henvist <til hvem>" in text
    copies = [m for m in messages(tmp_path) if str(m["Subject"]).startswith("Dagsorden") and m["Subject"] != subject]
    assert copies and all("[SF" not in str(m["Subject"]) and "SÅDAN SVARER" not in body(m) for m in copies)


def test_a_coordinators_reply_decides_each_slot_and_everyone_concerned_is_told(forum, tmp_path):
    app, dispatcher, subject = forum
    outcome = decide_by_mail(app, dispatcher, subject,
                             "Hej\r\n\r\n1: opstart\r\n2: intet grundlag - borgeren er flyttet\r\n"
                             "3: henvist Jobcenter Nord", "dec1")
    assert (outcome.outcome, outcome.series, outcome.session_start) == ("accepted", "unge", at("2027-01-14T10:00"))
    with app.transaction() as repo:
        (case,) = repo.cases()
        assert case.state.stage is rules.Stage.COORDINATION_BOOKED
        assert (case.referrer, case.receiver, case.state.holder) == (KAREN, "myndighed.unge@kommune.example",
                                                                   "myndighed.unge@kommune.example")
        assert COORDINATOR in case.parties
        (meeting,) = repo.case_meetings(case.id)
        assert meeting.kind == "coordination" and meeting.status == "booked"
        assert at("2027-01-15T09:00") <= meeting.start < at("2027-01-29T00:00"), "the next 10 working days"
        assert meeting.end - meeting.start == app.config.followup.coordination_minutes * 60 * __import__(
            "datetime").timedelta(seconds=1)
        assert [d.decision for d in repo.decisions_of_session(SESSION)] == ["start", "no-basis", "referred"]
        assert repo.decisions_of_session(SESSION)[2].referred_to == "Jobcenter Nord"
    sent = messages(tmp_path)
    answer = answer_to(tmp_path, "dec1")
    assert "Punkt 1: opstart, sag " + case.id in body(answer) and "Punkt 3: henvist" in body(answer)
    told = {str(m["To"]): m for m in sent if str(m["Subject"]).startswith("Beslutning:")}
    assert "150200-xxxx" in body(told[f"{KAREN}, myndighed.unge@kommune.example"])
    assert "borgeren er flyttet" in body(told[BO]) and "Der er ikke grundlag" in body(told[BO])
    assert "Jobcenter Nord" in body(told[KAREN])
    invitation = next(m for m in sent if calendars(m) and case.id in str(m["Subject"]))
    (event,) = calendars(invitation)[0].walk("VEVENT")
    attendees = {str(a).lower().removeprefix("mailto:") for a in event.get("ATTENDEE")}
    assert {KAREN, "myndighed.unge@kommune.example", COORDINATOR} <= attendees
    for heading in ("Indsatser og formål", "Hvem gør hvad", "Periode", "Parallelt eller i rækkefølge",
                    "Rammen for samarbejdet", "Opfølgning"):
        assert heading in str(event["DESCRIPTION"]) and heading in body(invitation)
    for message in sent:  # no CPR in any invitation, subject or case id
        assert not CPR_ANYWHERE.search(str(message["Subject"]))
        for cal in calendars(message):
            assert not CPR_ANYWHERE.search(cal.to_ical().decode())
    assert not CPR_ANYWHERE.search(case.id)


def test_a_strangers_reply_is_quarantined_and_decides_nothing(forum, tmp_path):
    app, dispatcher, subject = forum
    outcome = decide_by_mail(app, dispatcher, subject, "1: opstart", "stranger", sender=KAREN)
    assert outcome.outcome == "quarantined" and "koordinatorer" in outcome.reason
    outside = decide_by_mail(app, dispatcher, subject, "1: opstart", "outside", sender="x@example.org")
    assert outside.outcome == "quarantined"
    with app.transaction() as repo:
        assert repo.decisions_of_session(SESSION) == [] and repo.cases() == []
    assert not [m for m in messages(tmp_path) if m["In-Reply-To"] in ("<stranger@kommune.example>",
                                                                        "<outside@kommune.example>")]


def test_an_unreadable_line_is_named_in_the_answer_and_the_others_count(forum, tmp_path):
    app, dispatcher, subject = forum
    outcome = decide_by_mail(app, dispatcher, subject, "1: opstrat\r\n2: udsat\r\n3: henvist", "bad")
    assert outcome.outcome == "accepted"
    text = body(answer_to(tmp_path, "bad"))
    assert "Linje 1 »1: opstrat«: Beslutningen kunne ikke læses" in text
    assert "Linje 3 »3: henvist«: En »henvist« kræver, hvortil" in text
    assert "Punkt 2: udsat" in text
    only_bad = decide_by_mail(app, dispatcher, subject, "1: måske", "bad2")
    assert only_bad.outcome == "rejected" and "Linje 1 »1: måske«" in body(answer_to(tmp_path, "bad2"))
    nothing = decide_by_mail(app, dispatcher, subject, "Tak for i dag", "none")
    assert nothing.outcome == "rejected" and "ingen beslutning" in nothing.reason


def test_a_decision_for_a_slot_with_no_item_is_answered_clearly(forum, tmp_path):
    app, dispatcher, subject = forum
    outcome = decide_by_mail(app, dispatcher, subject, "7: opstart", "seven")
    assert outcome.outcome == "rejected"
    assert "Linje 1 »7: opstart«: Punktet findes ikke på dagsordenen; mødet havde 3 punkter." in body(answer_to(tmp_path, "seven"))
    with app.transaction() as repo:
        assert repo.decisions_of_session(SESSION) == []


def test_a_later_reply_corrects_the_decision_and_the_caseworker_is_told_of_the_change(forum, tmp_path):
    app, dispatcher, subject = forum
    decide_by_mail(app, dispatcher, subject, "1: opstart", "first")
    with app.transaction() as repo:
        (case,) = repo.cases()
        (meeting,) = repo.case_meetings(case.id)
    decide_by_mail(app, dispatcher, subject, "1: intet grundlag - alligevel ikke", "second", now="2027-01-14T14:00")
    with app.transaction() as repo:
        assert repo.latest_decision(SESSION, 1).decision == "no-basis"
        assert not repo.case(case.id).state.open, "the case the first decision opened is closed"
        assert repo.case_meetings(case.id)[0].status == "cancelled"
    sent = messages(tmp_path)
    change = next(m for m in sent if str(m["Subject"]).startswith("Ændret beslutning"))
    assert KAREN in str(change["To"]) and "den var »opstart«, nu er den »intet grundlag«" in body(change)
    cancels = [c for m in sent for c in calendars(m) if str(c["METHOD"]) == "CANCEL"]
    assert any(str(e["UID"]) == meeting.uid for c in cancels for e in c.walk("VEVENT"))
    assert "ændret fra opstart" in body(answer_to(tmp_path, "second"))
    again = decide_by_mail(app, dispatcher, subject, "1: intet grundlag", "third", now="2027-01-14T15:00")
    assert again.outcome == "accepted"
    told = lambda found: [m for m in found if str(m["Subject"]).startswith(("Beslutning:", "Ændret"))]  # noqa: E731
    assert len(told(messages(tmp_path))) == len(told(sent)) == 2, "the same decision again tells nobody"


def test_udsat_takes_the_first_slot_of_the_next_session_ahead_of_newer_items(forum, tmp_path):
    app, dispatcher, subject = forum
    # The next session fills up with items that arrived after the postponed one.
    for n, cpr in enumerate(CPRS[3:] + ["0708034234", "0809024234", "0910014234"]):
        ingest(app, item_mail(cpr, f"later{n}", sender=BO), f"2027-01-12T0{n + 1}:00")
    with app.transaction() as repo:
        before = [i.id for i in repo.items_of_session(NEXT)]
        postponed = repo.items_of_session(SESSION)[1]
    assert len(before) == 6
    decide_by_mail(app, dispatcher, subject, "2: udsat", "later")
    with app.transaction() as repo:
        after = repo.items_of_session(NEXT)
        assert [i.id for i in after] == [postponed.id] + before[:5], "first; the others move down, the newest on"
        assert after[0].received_at == postponed.received_at, "it keeps its arrival time"
        assert repo.item(before[5]).session_key == "unge/2027-01-28"
    sent = messages(tmp_path)
    assert any(str(m["Subject"]).startswith("Flyttet") and BO in str(m["To"]) for m in sent)
    told = next(m for m in sent if str(m["Subject"]).startswith("Beslutning: udsat"))
    assert "første tid på næste møde" in body(told) and "21. januar 2027" in body(told)
    # slot numbers of the held session stay as the agenda printed them
    decide_by_mail(app, dispatcher, subject, "3: opstart", "after-udsat", now="2027-01-14T12:00")
    with app.transaction() as repo:
        assert repo.latest_decision(SESSION, 3).item_id == repo.items_of_session(SESSION)[1].id


def test_decide_by_command_prints_the_contract(forum, tmp_path, capsys):
    app, _, _ = forum
    config = tmp_path / "sparring.toml"
    config.write_text((__import__("pathlib").Path("config/sparring.toml")).read_text())
    argv = ["--config", str(config), "--data-dir", str(tmp_path), "--now", "2027-01-14T12:00", "decide",
            "--series", "unge", "--session", "2027-01-14", "--slot", "2", "--decision", "start",
            "--receiver", "rikke@kommune.example", "--note", "haster", "--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == ["series", "session_start", "slot", "decision", "case", "notified"]
    assert printed["series"] == "unge" and printed["session_start"] == "2027-01-14T10:00:00+01:00"
    assert (printed["slot"], printed["decision"]) == (2, "start")
    assert re.fullmatch(r"K-[0-9A-Z]{6}", printed["case"])
    assert printed["notified"] == [BO, "rikke@kommune.example"]
    assert main(argv[:11] + ["--slot", "9", "--decision", "no-basis"]) == 1
    assert "decide: slot 9 of unge 2027-01-14: The item is not on the agenda; the session had 3 items." in \
        capsys.readouterr().err


def test_erasing_a_citizen_takes_their_case_its_meeting_and_the_decisions(forum, tmp_path):
    from scheduler.services.access import erase

    app, dispatcher, subject = forum
    decide_by_mail(app, dispatcher, subject, "1: opstart\r\n2: intet grundlag", "both")
    with app.transaction() as repo:
        (case,) = repo.cases()
        (meeting,) = repo.case_meetings(case.id)
    done = erase(app, "150200-4234")
    dispatcher.run_once(limit=500)
    assert done.calendar >= 1
    with app.transaction() as repo:
        assert repo.cases() == [] and repo.case_meetings(case.id) == []
        assert [d.slot for d in repo.decisions_of_session(SESSION)] == [2], "the other citizen's decision stays"
    cancels = [c for m in messages(tmp_path) for c in calendars(m) if str(c["METHOD"]) == "CANCEL"]
    assert any(str(e["UID"]) == meeting.uid for c in cancels for e in c.walk("VEVENT"))


def test_a_decision_that_opened_no_case_is_purged_with_its_retention(forum):
    from scheduler.services.retention import purge

    app, dispatcher, subject = forum
    decide_by_mail(app, dispatcher, subject, "1: opstart\r\n2: intet grundlag", "purge")
    app.clock.set(at("2027-03-01T12:00"))
    purge(app)
    with app.transaction() as repo:
        assert [d.slot for d in repo.decisions_of_session(SESSION)] == [1], "a case's decision lives with the case"
    with app.connection() as conn:
        assert "decision-purged" in [r[0] for r in conn.exec_driver_sql("SELECT action FROM audit")]


def test_the_decision_texts_are_available_in_english(tmp_path, monkeypatch):
    from scheduler.config import load_config
    from tests.appkit import CONFIG

    config = load_config(CONFIG)
    config = config.model_copy(update={"service": config.service.model_copy(update={"language": "en"})})
    app, dispatcher = build(tmp_path, "2027-01-08T08:00", monkeypatch, config=config)
    ingest(app, item_mail(CPRS[0], "en1"), "2027-01-08T09:00")
    app.clock.set(at("2027-01-11T12:00"))
    deadlines.send_agenda(app, SESSION)
    dispatcher.run_once(limit=500)
    agenda = next(m for m in messages(tmp_path) if str(m["Subject"]).startswith("Agenda:") and COORDINATOR in str(m["To"]))
    assert str(agenda["Subject"]).endswith("[SF unge 2027-01-14]") and "HOW TO ANSWER" in body(agenda)
    decide_by_mail(app, dispatcher, str(agenda["Subject"]), "1: udsat - no doctor's note\r\n2: opstart", "en2")
    answer = body(answer_to(tmp_path, "en2"))
    assert "Item 1: postponed" in answer and "Line 2 \"2: opstart\": The item is not on the agenda" in answer
    told = next(m for m in messages(tmp_path) if str(m["Subject"]).startswith("Decision: postponed"))
    assert "first slot of the next session" in body(told) and "150200-xxxx" in body(told)


def _opened_without_its_meeting(app):
    """A case opened whose koordineringsmøde was never booked, as if the
    service stopped between the decision and its booking."""
    with app.transaction() as repo:
        return repo.open_case(series_id="unge", session_start=at("2027-01-14T10:00"), slot=1, cpr_digits=CPRS[0],
                              referrer=KAREN, receiver="rikke@kommune.example", coordinators=(COORDINATOR,),
                              now=app.now(), actor=COORDINATOR)


def _assert_coordination_booked(app, case_id: str) -> None:
    with app.transaction() as repo:
        assert repo.case(case_id).state.stage is rules.Stage.COORDINATION_BOOKED
        assert [m.status for m in repo.case_meetings(case_id)] == ["booked"]


def test_a_case_whose_coordination_booking_was_lost_is_booked_by_the_hourly_job(forum):
    from scheduler.services.decisions import book_pending

    app, dispatcher, _ = forum
    case = _opened_without_its_meeting(app)
    assert book_pending(app) == [case.id]
    assert book_pending(app) == [], "booked once"
    _assert_coordination_booked(app, case.id)


def test_simulate_books_a_lost_coordination_meeting_like_the_hourly_job(forum):
    from datetime import date

    from scheduler.mail.folder import FolderSource
    from scheduler.services.simulate import simulate

    app, dispatcher, _ = forum
    case = _opened_without_its_meeting(app)
    inbox = FolderSource(app.data_dir / "inbox", cipher=app.cipher, durable=False)
    simulate(app, dispatcher, date(2027, 1, 15), date(2027, 1, 15), inbox)
    _assert_coordination_booked(app, case.id)


def test_udsat_gives_way_to_the_citizens_newer_item_already_on_the_next_agenda(forum, tmp_path):
    app, dispatcher, subject = forum
    # The citizen of slot 2 has a newer item in the next session already: its text is the caseworker's latest.
    assert ingest(app, item_mail(CPRS[1], "newer", sender=BO), "2027-01-12T09:00").outcome == "moved"  # late for the 14th
    with app.transaction() as repo:
        postponed = repo.items_of_session(SESSION)[1]
        newer = repo.items_of_session(NEXT)[0]
    decide_by_mail(app, dispatcher, subject, "2: udsat", "gives-way")
    with app.transaction() as repo:
        assert [i.id for i in repo.items_of_session(NEXT)] == [newer.id], "the newer item stays, its text kept"
        assert repo.item(newer.id).status == "pending"
        assert repo.item(postponed.id).status == "replaced"
    told = next(m for m in messages(tmp_path) if str(m["Subject"]).startswith("Beslutning: udsat"))
    assert "nyere punkt" in body(told) and "21. januar 2027" in body(told)
    # slot numbers of the held session stay as the agenda printed them; a correction takes the udsat back
    decide_by_mail(app, dispatcher, subject, "2: intet grundlag", "corrected", now="2027-01-14T12:00")
    with app.transaction() as repo:
        assert repo.item(postponed.id).status == "pending" and repo.item(postponed.id).session_key == SESSION
        assert repo.latest_decision(SESSION, 2).item_id == postponed.id
        assert repo.item(newer.id).status == "pending"
