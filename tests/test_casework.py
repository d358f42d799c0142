"""After the koordineringsmøde (issue 15, items 4-7): Enighed books the
fællessamtale, Opfølgning the follow-ups, a case closes and is deleted."""

from __future__ import annotations

import json
import re

from sqlalchemy import select

from scheduler import cli
from scheduler.planning import cases as rules
from scheduler.services import casework, retention
from scheduler.store.tables import AuditEntry, Case, CaseMeeting
from tests.appkit import at, build, ingest
from tests.test_booking import busy_file
from tests.test_meetings import events, sent

KAREN, MYND = "karen@kommune.example", "myndighed.unge@kommune.example"
COORDINATORS = ("koordinator.social@kommune.example", "koordinator.unge@kommune.example")
CPR = "150303-4321"
CPR_SHAPE = re.compile(r"\d{6}-?\d{4}")


def open_case(app, coordination: tuple[str, str] | None = ("2027-01-20T10:00", "2027-01-20T11:00")) -> str:
    """A case as opstart leaves it: opened, its koordineringsmøde booked."""
    with app.transaction() as repo:
        case = repo.open_case(series_id="unge", session_start=at("2027-01-14T13:00"), slot=1,
                              cpr_digits=CPR.replace("-", ""), referrer=KAREN, receiver=MYND,
                              coordinators=COORDINATORS, now=app.now(), actor=COORDINATORS[0])
        if coordination:
            start, end = map(at, coordination)
            repo.add_case_meeting(case.id, "coordination", start=start, end=end, status="booked",
                                  uid=f"sparring-coordination-x@{case.id.lower()}", now=app.now())
            repo.advance_case(case.id, rules.CoordinationBooked(), app.now(), actor="system")
    return case.id


def mail(subject: str, body: str, mid: str, sender: str = MYND) -> bytes:
    return (f"From: {sender}\r\nTo: sparring@kommune.example\r\nSubject: {subject}\r\n"
            f"Message-ID: <{mid}@kommune.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


def shown(app, case_id: str) -> dict:
    with app.transaction() as repo:
        return casework.describe(app, repo, repo.case(case_id))


def assert_nothing_personal(messages, case_id: str) -> None:
    for message in messages:
        assert not CPR_SHAPE.search(str(message["Subject"])) and case_id in str(message["Subject"])
    for _, event in events(messages):
        assert not CPR_SHAPE.search(event.to_ical().decode()), "a CPR number in an invitation"
    assert not CPR_SHAPE.search(case_id)


def test_enighed_by_reply_books_the_joint_conversation_and_tells_every_party(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-20T12:00", monkeypatch)
    case_id = open_case(app)
    busy_file(tmp_path, KAREN, ("20270121T000000", "20270122T000000"))  # Karen is away on the 21st
    outcome = ingest(app, mail(f"SV: Koordineringsmøde [{case_id}]", "Enighed\r\n\r\nVh Mette", "e1"),
                     "2027-01-20T12:00")
    assert outcome.outcome == "accepted"
    dispatcher.run_once(limit=100)
    messages = sent(tmp_path)
    (joint,) = [e for method, e in events(messages) if method == "REQUEST"]
    assert joint.decoded("DTSTART").isoformat() == "2027-01-22T09:00:00+01:00"
    assert {str(a).lower().removeprefix("mailto:") for a in joint.get("ATTENDEE")} == {KAREN, MYND}
    assert str(joint["SUMMARY"]) == f"Fællessamtale med borgeren [{case_id}]"
    (notice,) = [m for m in messages if str(m["Subject"]).startswith("Fællessamtale booket")]
    assert set(notice["To"].addresses[n].addr_spec for n in range(len(notice["To"].addresses))) == {
        KAREN, MYND, *COORDINATORS}
    body = notice.get_content()
    assert "Digital Post" in body and "Indkaldelse til fællessamtale" in body and "150303-xxxx" in body
    assert_nothing_personal(messages, case_id)
    view = shown(app, case_id)
    assert [(m["kind"], m["status"]) for m in view["meetings"]] == [("coordination", "booked"), ("joint", "booked")]
    assert view["waiting_on"] == {"step": "followup_dates", "on": [KAREN, MYND]}


def test_enighed_from_someone_outside_the_case_is_refused(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-20T12:00", monkeypatch)
    case_id = open_case(app)
    outcome = ingest(app, mail(f"Enighed [{case_id}]", "", "e2", sender="bo@kommune.example"), "2027-01-20T12:00")
    assert outcome.outcome == "rejected" and "sagsbehandlere" in outcome.reason
    assert ingest(app, mail("Enighed [K-ZZZZZZ]", "", "e3"), "2027-01-20T12:00").outcome == "rejected"
    with app.transaction() as repo:
        assert repo.case(case_id).state.stage is rules.Stage.COORDINATION_BOOKED


def test_no_agreement_within_the_period_tells_the_coordinators_once(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-20T12:00", monkeypatch)
    case_id = open_case(app)
    app.clock.set(at("2027-02-03T06:00"))  # the 10th working day after the 20th: not yet
    assert casework.tick(app).escalated == []
    for day in ("2027-02-04T06:00", "2027-02-05T06:00"):
        app.clock.set(at(day))
        casework.tick(app)
    dispatcher.run_once(limit=100)
    alerts = [m for m in sent(tmp_path) if str(m["Subject"]).startswith("Ingen enighed")]
    assert len(alerts) == 1 and set(alerts[0]["To"].addresses[n].addr_spec for n in range(2)) == set(COORDINATORS)
    assert shown(app, case_id)["meetings"][0]["status"] == "held"


def test_followups_by_mail_are_booked_and_the_last_one_held_closes_the_case(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-20T12:00", monkeypatch)
    case_id = open_case(app)
    casework.agree(app, case_id, MYND)
    busy_file(tmp_path, MYND, ("20270301T000000", "20270302T000000"),  # away the 1st of March
              ("20270601T000000", "20270609T000000"))  # and the whole first week of June and more
    body = "Opfølgning\r\n2027-03-01\r\n1-6-2027\r\n\r\nVh Mette"
    outcome = ingest(app, mail(f"Re: Fællessamtale booket [{case_id}]", body, "f1"), "2027-01-25T09:00")
    assert outcome.outcome == "accepted"
    dispatcher.run_once(limit=100)
    view = shown(app, case_id)
    followups = [m for m in view["meetings"] if m["kind"] == "followup"]
    assert [m["start"] for m in followups] == ["2027-03-02T09:00:00+01:00"]
    (notice,) = [m for m in sent(tmp_path) if str(m["Subject"]).startswith("Opfølgning booket")]
    body = notice.get_content()
    assert "Ingen tid" in body and "1. juni 2027" in body and MYND in body  # the holder is told
    assert_nothing_personal([m for m in sent(tmp_path) if case_id in str(m["Subject"])], case_id)
    app.clock.set(at("2027-03-03T06:00"))
    due = casework.tick(app)
    assert due.closed == [case_id]
    with app.transaction() as repo:
        assert repo.case(case_id).state.stage is rules.Stage.CLOSED
    dispatcher.run_once(limit=100)
    assert any(str(m["Subject"]).startswith("Sagen er lukket") for m in sent(tmp_path))


def test_a_malformed_followup_line_is_answered_by_its_number(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-20T12:00", monkeypatch)
    case_id = open_case(app)
    casework.agree(app, case_id, MYND)
    outcome = ingest(app, mail(f"Opfølgning [{case_id}]", "2027-03-01\r\n2027-02-30\r\n", "f2"), "2027-01-25T09:00")
    assert outcome.outcome == "rejected" and "Linje 2" in outcome.reason


def test_followup_before_agreement_is_refused(tmp_path, monkeypatch):
    app, _ = build(tmp_path, "2027-01-20T12:00", monkeypatch)
    case_id = open_case(app)
    outcome = ingest(app, mail(f"Opfølgning [{case_id}]", "2027-03-01", "f3"), "2027-01-25T09:00")
    assert outcome.outcome == "rejected" and "Enighed" in outcome.reason


def run(tmp_path, capsys, *argv) -> tuple[int, str]:
    code = cli.main(["--data-dir", str(tmp_path), "--now", "2027-01-21T09:00", *argv])
    return code, capsys.readouterr().out


def test_case_commands_as_written(tmp_path, monkeypatch, capsys):
    app, _ = build(tmp_path, "2027-01-20T12:00", monkeypatch)
    case_id = open_case(app)
    app.engine.dispose()
    code, out = run(tmp_path, capsys, "case", "agree", "--case", case_id.lower(), "--json")
    assert code == 0 and json.loads(out)["booked"][0]["start"].startswith("2027-01-22T09:00")
    code, out = run(tmp_path, capsys, "case", "followup", "--case", case_id, "--on", "2027-03-01,2027-04-01", "--json")
    assert code == 0 and len(json.loads(out)["booked"]) == 2
    code, out = run(tmp_path, capsys, "case", "show", "--case", case_id, "--json")
    view = json.loads(out)
    assert list(view) == ["case", "series", "holder", "parties", "decisions", "meetings", "waiting_on"]
    assert view["holder"] == MYND and set(view["parties"]) == {KAREN, MYND, *COORDINATORS}
    assert [list(m) for m in view["meetings"]][0] == ["kind", "start", "end", "status", "uid"]
    assert [m["kind"] for m in view["meetings"]] == ["coordination", "joint", "followup", "followup"]
    code, out = run(tmp_path, capsys, "case", "list", "--open", "--json")
    assert [c["case"] for c in json.loads(out)] == [case_id]
    code, out = run(tmp_path, capsys, "case", "close", "--case", case_id)
    assert code == 0
    code, out = run(tmp_path, capsys, "case", "list", "--open", "--json")
    assert json.loads(out) == []
    code, out = run(tmp_path, capsys, "case", "show", "--case", case_id, "--json")
    assert {m["status"] for m in json.loads(out)["meetings"] if m["kind"] == "followup"} == {"cancelled"}
    assert run(tmp_path, capsys, "case", "agree", "--case", case_id)[0] == 1


def test_a_closed_case_is_deleted_after_the_retention_and_the_trail_says_so(tmp_path, monkeypatch):
    app, _ = build(tmp_path, "2027-01-20T12:00", monkeypatch)
    case_id = open_case(app)
    casework.close(app, case_id, "koordinator.social@kommune.example")
    app.clock.set(at("2027-02-19T12:00"))  # 30 days: not yet
    retention.purge(app)
    with app.transaction() as repo:
        assert repo.case(case_id) is not None
    app.clock.set(at("2027-02-20T12:00"))
    retention.purge(app)
    with app.transaction() as repo:
        assert repo.case(case_id) is None
        assert repo.db.scalars(select(CaseMeeting)).all() == [] and repo.db.scalars(select(Case)).all() == []
        actions = [r.action for r in repo.db.scalars(select(AuditEntry))]
    assert "case-purged" in actions


def test_no_time_for_the_joint_conversation_tells_the_parties_and_agreeing_again_books_it(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-20T12:00", monkeypatch)
    case_id = open_case(app)
    busy_file(tmp_path, KAREN, ("20270121T000000", "20270204T000000"))  # away ten working days
    step = casework.agree(app, case_id, MYND)
    assert step.booked == [] and set(step.notified) == {KAREN, MYND, *COORDINATORS}
    dispatcher.run_once(limit=100)
    (notice,) = [m for m in sent(tmp_path) if str(m["Subject"]).startswith("Ingen fælles tid")]
    assert "Digital Post" in notice.get_content()
    assert shown(app, case_id)["waiting_on"] == {"step": "joint", "on": [MYND]}
    app.clock.set(at("2027-02-01T09:00"))
    step = casework.agree(app, case_id, MYND)
    assert step.booked[0][0] == at("2027-02-04T09:00")
    with app.transaction() as repo:
        assert repo.case(case_id).state.stage is rules.Stage.JOINT_BOOKED


def test_erase_deletes_the_citizens_case_cancels_its_meetings_and_its_notices(tmp_path, monkeypatch):
    from scheduler.services.access import erase

    app, dispatcher = build(tmp_path, "2027-01-20T12:00", monkeypatch)
    case_id = open_case(app)
    casework.agree(app, case_id, MYND)
    dispatcher.run_once(limit=100)
    assert any(b"150303-xxxx" in p.read_bytes() for p in (tmp_path / "outbox").glob("*.eml"))
    done = erase(app, CPR)
    dispatcher.run_once(limit=100)
    assert done.calendar == 1  # the fællessamtale (the koordineringsmøde is over)
    cancels = [e for method, e in events(sent(tmp_path)) if method == "CANCEL"]
    assert [str(e["SUMMARY"]) for e in cancels] == [f"Fællessamtale med borgeren [{case_id}]"]
    with app.transaction() as repo:
        assert repo.case(case_id) is None and repo.db.scalars(select(CaseMeeting)).all() == []
    assert not any(b"150303-xxxx" in p.read_bytes() for p in (tmp_path / "outbox").glob("*.eml"))


def test_run_once_at_the_time_closes_the_case_and_tells_the_coordinators(tmp_path, monkeypatch, capsys):
    app, _ = build(tmp_path, "2027-01-20T12:00", monkeypatch)
    late = open_case(app)  # no Enighed: overdue after ten working days
    done = open_case(app, coordination=None)
    casework.agree(app, done, MYND)
    casework.followups(app, done, [at("2027-02-01T00:00").date()], KAREN)
    app.engine.dispose()
    assert cli.main(["--data-dir", str(tmp_path), "--now", "2027-02-05T06:00", "run", "--once"]) == 0
    capsys.readouterr()
    with app.transaction() as repo:
        assert repo.case(done).state.stage is rules.Stage.CLOSED
        assert repo.case(late).state.stage is rules.Stage.COORDINATION_BOOKED
    subjects = [str(m["Subject"]) for m in sent(tmp_path)]
    assert f"Sagen er lukket [{done}]" in subjects and f"Ingen enighed endnu [{late}]" in subjects
