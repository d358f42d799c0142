"""Issue 15 in ``simulate``: from an item by mail to the last follow-up.

The caseworkers learn the case id from sparring's mails, so the simulation
runs in stretches, and their mails about the case are dropped into the
inbox between them, dated as they would be written.
"""

from __future__ import annotations

import email
import email.policy
import re
from datetime import date


from scheduler.mail.folder import FolderSource
from scheduler.planning import cases as rules
from scheduler.services import casework
from scheduler.services.simulate import simulate
from tests.appkit import build, item_mail
from tests.test_casework import COORDINATORS, CPR, KAREN, MYND, open_case
from tests.test_meetings import events

CPR_SHAPE = re.compile(r"\d{6}[-\s]?\d{4}")
PARTIES = {KAREN, MYND, *COORDINATORS}


def run(app, dispatcher, first: date, last: date) -> None:
    """``sparring simulate`` over the inbox folder, as the command runs it."""
    simulate(app, dispatcher, first, last, FolderSource(app.data_dir / "inbox", cipher=app.cipher, durable=False))


def drop(tmp_path, name: str, raw: bytes) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / f"{name}.eml").write_bytes(raw)


def mail(sender: str, subject: str, body: str, mid: str, sent: str) -> bytes:
    return (f"From: {sender}\r\nTo: sparring@kommune.example\r\nSubject: {subject}\r\n"
            f"Date: {sent}\r\nMessage-ID: <{mid}@kommune.example>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


def outbox(tmp_path):
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted((tmp_path / "outbox").glob("*.eml"))]


def to(message) -> set[str]:
    return {a.addr_spec.lower() for a in message["To"].addresses} if message["To"] else set()


def text_of(message) -> str:
    part = message.get_body(preferencelist=("plain",))
    return part.get_content() if part else ""


def the_case(app):
    with app.transaction() as repo:
        (case,) = repo.cases()
        return case, repo.case_meetings(case.id)


def after_agreement(tmp_path, app, dispatcher, case_id: str) -> None:
    """Enighed the day after the koordineringsmøde, the plan's dates a week later."""
    drop(tmp_path, "enighed", mail(MYND, f"SV: Koordineringsmøde [{case_id}]", "Enighed\r\n\r\nVh Mette",
                                   "enighed", "Thu, 21 Jan 2027 09:30:00 +0100"))
    drop(tmp_path, "plan", mail(KAREN, f"Opfølgning [{case_id}]", "Hej\r\n2027-03-01\r\n5.4.2027\r\n\r\nKaren",
                                "plan", "Thu, 28 Jan 2027 14:00:00 +0100"))
    run(app, dispatcher, date(2027, 1, 21), date(2027, 4, 30))


def assert_the_chain(tmp_path, app, case_id: str) -> None:
    with app.transaction() as repo:
        case = repo.case(case_id)
        meetings = repo.case_meetings(case_id)
    assert case.state.stage is rules.Stage.CLOSED
    kinds = [(m.kind, m.status) for m in meetings]
    assert kinds[-3:] == [("joint", "held"), ("followup", "held"), ("followup", "held")]
    followups = [m.start.astimezone(app.tz).date() for m in meetings if m.kind == "followup"]
    assert followups == [date(2027, 3, 1), date(2027, 4, 5)]
    messages = outbox(tmp_path)
    about = [m for m in messages if case_id in str(m["Subject"])]
    for step in ("Fællessamtale booket", "Opfølgning booket", "Sagen er lukket"):
        (told,) = [m for m in about if str(m["Subject"]).startswith(step)]
        assert to(told) == PARTIES, step
    invitations = [e for method, e in events(messages) if method == "REQUEST" and case_id in str(e["SUMMARY"])]
    assert len({str(e["UID"]) for e in invitations}) >= 3  # fællessamtale and two follow-ups (and coordination)
    for event in invitations:
        assert {KAREN, MYND} <= {str(a).lower().removeprefix("mailto:") for a in event.get("ATTENDEE")}
    digits = CPR.replace("-", "")
    for message in messages:
        assert not CPR_SHAPE.search(str(message["Subject"]))
    for _, event in events(messages):
        text = event.to_ical().decode()
        assert digits not in text and CPR not in text and not CPR_SHAPE.search(text)
    assert not re.search(r"\d{6}", case_id)


def test_from_enighed_to_the_last_follow_up_in_simulate(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-20T12:00", monkeypatch)
    case_id = open_case(app)
    after_agreement(tmp_path, app, dispatcher, case_id)
    assert_the_chain(tmp_path, app, case_id)


def test_the_whole_chain_from_an_item_by_mail(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T00:00", monkeypatch)
    drop(tmp_path, "item", item_mail(CPR, "item1").replace(
        b"Subject:", b"Date: Tue, 5 Jan 2027 10:00:00 +0100\r\nSubject:"))
    drop(tmp_path, "decision", mail(COORDINATORS[1], "SV: Dagsorden [SF unge 2027-01-14]",
                                    "1: opstart\r\n\r\nVh koordinatorerne", "decision", "Thu, 14 Jan 2027 11:30:00 +0100"))
    run(app, dispatcher, date(2027, 1, 4), date(2027, 1, 20))
    case, meetings = the_case(app)
    assert case.receiver == MYND and set(case.parties) == PARTIES
    assert [(m.kind, m.status) for m in meetings] == [("coordination", "held")]  # by the hourly job
    assert meetings[0].end.astimezone(app.tz).date() <= date(2027, 1, 20)
    told = [m for m in outbox(tmp_path) if KAREN in to(m) and case.id in text_of(m)]
    assert told, "the caseworker who brought the item is told of the opstart"
    after_agreement(tmp_path, app, dispatcher, case.id)
    assert_the_chain(tmp_path, app, case.id)
    with app.transaction() as repo:
        shown = casework.describe(app, repo, repo.case(case.id))
    assert [(d["decision"], d["decided_by"]) for d in shown["decisions"]] == [("start", COORDINATORS[1])]
    assert [m["kind"] for m in shown["meetings"]] == ["coordination", "joint", "followup", "followup"]
    assert shown["waiting_on"] is None
