"""Hostile mail (issue 11, items 10, 11, 13, 16, 17, 18): what an outsider
with nothing but an address can send must end in one outcome, one folder,
at most one answer, and never a traceback with the mail in it."""

from __future__ import annotations

import email
import email.policy
import os
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import cli
from scheduler.mail import parse as parse_module
from scheduler.mail.folder import FolderSource
from scheduler.mail.headerforms import VALID_ADDRESS
from scheduler.mail.parse import MAX_HEADER, MailKind, parse_mail
from scheduler.ports import IncomingMail
from scheduler.services.intake import Intake
from tests.appkit import CONFIG, at, build, ingest, item_mail
from tests.test_booking import A, B

ANNE = "anne.testesen@kommune.example"
BODY = b"\r\n\r\nCPR: 150303-4321\r\nHelbred: Angst.\r\nSociale udfordringer: Gaeld.\r\n"
HEAD = b"To: sparring@kommune.example\r\nSubject: Sparring\r\n"

CRASHERS = {  # item 10: each raised somewhere in intake or simulate before
    "nul-charset": b"From: a@kommune.example\r\nMessage-ID: <n1@x>\r\n" + HEAD
                   + b'Content-Type: text/plain; charset="utf\x00-8"' + BODY,
    "recurrence-notadate": b"From: a@kommune.example\r\nMessage-ID: <n2@x>\r\n" + HEAD
                           + b"Content-Type: text/calendar; method=REPLY\r\n\r\nBEGIN:VCALENDAR\r\nMETHOD:REPLY\r\n"
                             b"BEGIN:VEVENT\r\nUID:x\r\nRECURRENCE-ID:notadate\r\n"
                             b"ATTENDEE;PARTSTAT=DECLINED:mailto:a@kommune.example\r\nEND:VEVENT\r\n"
                             b"END:VCALENDAR\r\n",
    "from-non-ascii": "From: ånne@kommune.example\r\nMessage-ID: <n3@x>\r\n".encode() + HEAD + BODY[2:],
    "message-id-non-ascii": "From: a@kommune.example\r\nMessage-ID: <nå4@x>\r\n".encode() + HEAD + BODY[2:],
    "date-8bit": b"From: a@kommune.example\r\nMessage-ID: <n5@x>\r\nDate: Mon, 04 Jan 2027 09:\xff2:00 +0100\r\n"
                 + HEAD + BODY[2:],
    "date-9999": b"From: a@kommune.example\r\nMessage-ID: <n6@x>\r\nDate: Fri, 31 Dec 9999 23:59:59 -1200\r\n"
                 + HEAD + BODY[2:],
}


def outbox(tmp_path):
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted((tmp_path / "outbox").glob("*.eml"))]


def run_cli(monkeypatch, capsys, data_dir, *argv, now="2027-01-04T08:00"):
    code = cli.main(["--config", str(CONFIG), "--data-dir", str(data_dir), "--now", now, *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def key(monkeypatch):
    from scheduler.store.keys import new_key

    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())


# -- item 10: mails that crashed intake ----------------------------------------


@pytest.mark.parametrize("name", sorted(CRASHERS))
def test_parse_mail_reads_each_crasher_without_raising(name):
    parsed = parse_mail(CRASHERS[name])
    assert parsed.message_id.isascii() and parsed.message_id.isprintable()
    assert parsed.date_header is None or parsed.date_header.year < 9999


def test_parse_mail_never_raises_even_when_its_insides_do(monkeypatch):
    """A bug anywhere in the parse makes the mail unreadable (rejected with a
    receipt: its sender is read from the headers), never an exception."""
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(parse_module, "_collect", broken)
    parsed = parse_mail(item_mail("150303-4321", "x"))
    assert parsed.kind is MailKind.UNREADABLE and parsed.sender == "karen@kommune.example"
    monkeypatch.setattr(parse_module, "_header_only", broken)
    parsed = parse_mail(item_mail("150303-4321", "x"))
    assert parsed.kind is MailKind.UNREADABLE and parsed.sender == ""  # nobody to answer


_HEADER_TEXT = st.lists(st.sampled_from(list("aæ@<>\",;:()=?_ \t\r\n\x00\udcff.-")
                                         + ["=?utf-8?q?", "?=", "kommune.example"]), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["From", "Sender", "Message-ID", "Date", "Subject", "Content-Type",
                                        "Content-Transfer-Encoding", "Auto-Submitted"]), _HEADER_TEXT),
       st.binary(max_size=200))
def test_parse_mail_never_raises_on_generated_headers_and_bodies(headers, body):
    raw = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("utf-8", "surrogateescape") + b"\r\n" + body
    parsed = parse_mail(raw)
    assert parsed.message_id.isascii() and parsed.message_id.isprintable() and " " not in parsed.message_id
    assert parsed.sender == "" or VALID_ADDRESS.fullmatch(parsed.sender)


def test_ingest_eml_gives_every_crasher_an_outcome_and_goes_on(tmp_path, monkeypatch, capsys, key):
    paths = []
    for name, raw in sorted(CRASHERS.items()):
        (tmp_path / f"{name}.eml").write_bytes(raw)
        paths.append(str(tmp_path / f"{name}.eml"))
    (tmp_path / "z-good.eml").write_bytes(item_mail("110698-2345", "good"))
    code, out, err = run_cli(monkeypatch, capsys, tmp_path / "data", "ingest", "--json", "--eml", *paths,
                             str(tmp_path / "z-good.eml"))
    assert code == 0 and "Traceback" not in err
    lines = [__import__("json").loads(line) for line in out.splitlines()]
    assert len(lines) == len(CRASHERS) + 1
    outcome = {line["message_id"]: line["outcome"] for line in lines}
    assert outcome["good@kommune.example"] == "accepted"
    assert outcome["n3@x"] == "quarantined"  # ånne@: no valid sender, nobody to answer
    assert outcome["n5@x"] == outcome["n6@x"] == "accepted"
    assert outcome["n2@x"] == "ignored"  # a calendar reply, unreadable or not


def test_simulate_goes_on_past_every_crasher(tmp_path, monkeypatch, capsys, key):
    inbox = tmp_path / "data" / "inbox"
    inbox.mkdir(parents=True)
    for name, raw in CRASHERS.items():
        (inbox / f"{name}.eml").write_bytes(raw)
    code, out, err = run_cli(monkeypatch, capsys, tmp_path / "data", "simulate", "--from", "2027-01-04",
                             "--to", "2027-01-10")
    assert code == 0 and "Traceback" not in err
    assert not list(inbox.glob("*.eml"))
    filed = [p.name for p in (tmp_path / "data").glob("*/*.eml.enc")]  # settled mails are kept sealed
    assert sorted(filed) == sorted(f"{name}.eml.enc" for name in CRASHERS)


def test_an_unexpected_error_prints_its_class_and_place_never_its_text(tmp_path, monkeypatch, capsys, key):
    from scheduler.services import intake as intake_module

    def leaking(*args, **kwargs):
        raise ValueError("Helbred: Angst, CPR 110698-2345")

    monkeypatch.setattr(intake_module.Intake, "process", leaking)
    (tmp_path / "a.eml").write_bytes(item_mail("110698-2345", "a"))
    code, out, err = run_cli(monkeypatch, capsys, tmp_path / "data", "ingest", "--eml", str(tmp_path / "a.eml"))
    assert code == 70
    assert "ValueError at commands.py:" in err  # the innermost frame of our code
    assert "110698" not in err and "Angst" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


# -- item 11: periods and after-commit tasks ------------------------------------


def request_mail(period: str, mid: str = "req1", externals: str = "mor@example.org") -> bytes:
    body = f"Deltagere: {B}\r\nEksterne: {externals}\r\nPeriode: {period}\r\nVarighed: 60\r\n"
    return (f"From: Anne <{A}>\r\nTo: sparring@kommune.example\r\nSubject: Netværksmøde\r\n"
            f"Message-ID: <{mid}@kommune.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


@pytest.mark.parametrize("period", ["2027-02-01 - 9999-12-31", "2027-02-01 - 2028-02-01", "2026-01-01 - 2026-12-31"])
def test_a_period_out_of_bounds_is_rejected_with_a_reason(tmp_path, monkeypatch, period):
    app, dispatcher = build(tmp_path, "2027-01-28T08:00", monkeypatch)
    outcome = ingest(app, request_mail(period), "2027-01-28T08:00")
    assert (outcome.outcome, outcome.extra["code"]) == ("rejected", "request_period_range")
    assert "366" in outcome.reason
    dispatcher.run_once()
    [receipt] = outbox(tmp_path)
    assert receipt["To"] == A and receipt["In-Reply-To"] == "<req1@kommune.example>"


def test_book_refuses_a_period_beyond_a_year(tmp_path, monkeypatch, capsys, key):
    code, out, err = run_cli(monkeypatch, capsys, tmp_path / "data", "book", "network", "--from", "2027-02-01",
                             "--to", "9999-12-31", "--duration", "60", "--required", A, now="2027-01-28T08:00")
    assert code != 0 and "366 days ahead" in err and "Traceback" not in err


def test_a_failing_after_commit_task_stops_no_other_and_the_sender_is_answered(tmp_path, monkeypatch):
    """A booking that raises (a bug) still answers its sender; the acute item
    decided in the same batch still gets its meeting task; the admin is told."""
    from scheduler.services import meetings
    from scheduler.services.booking import Booker

    app, dispatcher = build(tmp_path, "2027-01-28T08:00", monkeypatch)

    def broken(self, *args, **kwargs):
        raise OverflowError("date value out of range")

    monkeypatch.setattr(Booker, "book", broken)
    ran = []
    monkeypatch.setattr(meetings, "acute", lambda app, item_id: ran.append(item_id))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.eml").write_bytes(request_mail("2027-02-01 - 2027-02-05"))
    (inbox / "b.eml").write_bytes(item_mail("110698-2345", "acute", subject="AKUT sparring"))
    arrival = at("2027-01-28T07:55").timestamp()
    for path in inbox.iterdir():
        os.utime(path, (arrival, arrival))  # the arrival time, not the real clock's
    outcomes = Intake(app).run(FolderSource(inbox))
    assert [o.outcome for o in outcomes] == ["accepted", "accepted"] and outcomes[1].acute
    assert len(ran) == 1, "the task after the failing one ran"
    dispatcher.run_once(limit=100)
    messages = outbox(tmp_path)
    assert [m for m in messages if m["In-Reply-To"] == "<req1@kommune.example>"], "the requester is answered"
    alerts = [m for m in messages if m["To"] == app.config.service.admin]
    assert len(alerts) == 1 and "OverflowError" in alerts[0].get_content()


def test_one_raising_after_commit_callback_leaves_the_next_to_run(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-28T08:00", monkeypatch)
    ran = []

    def first():
        raise RuntimeError("a bug")

    with app.transaction() as repo:
        repo.after_commit += [first, lambda: ran.append("second")]
    assert ran == ["second"]
    dispatcher.run_once()
    assert [m["To"] for m in outbox(tmp_path)] == [app.config.service.admin]


# -- item 13: one strict address ---------------------------------------------


@pytest.mark.parametrize("sender", [
    f"{ANNE} <evil@x.org>",
    "a@kommune.example)<evil@x.org>",
    "a@kommune.example, evil@x.org",
    "<a@kommune.example> <evil@x.org>",
    "a@kommune.example;evil@x.org",
])
def test_a_from_that_is_not_exactly_one_address_is_quarantined(tmp_path, monkeypatch, sender):
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    outcome = ingest(app, item_mail("150303-4321", "f1", sender=sender), "2027-01-04T08:00")
    assert (outcome.outcome, outcome.extra["code"]) == ("quarantined", "not_allowed")
    dispatcher.run_once()
    assert outbox(tmp_path) == []


def test_a_forged_from_cannot_withdraw_annes_item(tmp_path, monkeypatch):
    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    assert ingest(app, item_mail("150303-4321", "i1", sender=ANNE), "2027-01-04T08:00").outcome == "accepted"
    withdraw = item_mail("150303-4321", "w1", subject="Træk tilbage", sender=f"{ANNE} <evil@x.org>")
    assert ingest(app, withdraw, "2027-01-04T08:05").outcome == "quarantined"
    with app.transaction() as repo:
        assert len(repo.pending_sessions(at("2027-01-01T00:00"))) == 1


def test_two_from_headers_give_no_sender():
    raw = b"From: a@kommune.example\r\n" + item_mail("150303-4321", "two", sender="evil@x.org")
    assert parse_mail(raw).sender == ""


def test_the_usual_from_forms_still_give_their_address():
    for value, address in ((f"Anne B. Testesen <{ANNE}>", ANNE), (f'"Testesen, Anne" <{ANNE}>', ANNE),
                           (f"=?utf-8?q?=C3=85se?= <{ANNE}>", ANNE), (f"{ANNE} (Anne)", ANNE),
                           (f"<{ANNE.upper()}>", ANNE)):
        assert parse_mail(item_mail("150303-4321", "u", sender=value)).sender == address, value


# -- item 16: floods -----------------------------------------------------------


def _with(app_config, **intake):
    return app_config.model_copy(update={"intake": app_config.intake.model_copy(update=intake)})


def test_a_sender_over_the_hourly_limit_is_quarantined_and_told_once(tmp_path, monkeypatch):
    from scheduler.config import load_config

    config = _with(load_config(CONFIG), rate_limit_per_hour=3)
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch, config=config)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    arrival = at("2027-01-04T08:00").timestamp()
    for n in range(6):  # one batch, no CPR: each would be rejected with a receipt
        (inbox / f"{n}.eml").write_bytes(item_mail("", f"b{n}", subject=f"Sparring {n}"))
        os.utime(inbox / f"{n}.eml", (arrival, arrival))  # the arrival time, not the real clock's
    outcomes = Intake(app).run(FolderSource(inbox))
    codes = [o.extra["code"] for o in outcomes]
    assert codes[3:] == ["rate_limited"] * 3 and "rate_limited" not in codes[:3]
    # one at a time, later in the same hour: still over the limit, and no second notice
    for n in range(6, 8):
        outcome = ingest(app, item_mail("", f"c{n}"), f"2027-01-04T08:{10 + n}")
        assert outcome.extra["code"] == "rate_limited"
    dispatcher.run_once(limit=100)
    messages = outbox(tmp_path)
    to_admin = [m for m in messages if m["To"] == app.config.service.admin]
    to_karen = [m for m in messages if m["To"] == "karen@kommune.example"]
    assert len(to_admin) == 1 and "karen@kommune.example" in to_admin[0].get_content()
    assert len(to_karen) == 2, "the first rejection and one notice of the limit"
    # two hours later the sender is taken in again
    outcome = ingest(app, item_mail("150303-4321", "later"), "2027-01-04T10:30")
    assert outcome.outcome == "accepted"


def test_a_request_with_too_many_externals_is_rejected(tmp_path, monkeypatch):
    app, _ = build(tmp_path, "2027-01-28T08:00", monkeypatch)
    many = ", ".join(f"p{n}@example.org" for n in range(21))
    outcome = ingest(app, request_mail("2027-02-01 - 2027-02-05", externals=many), "2027-01-28T08:00")
    assert (outcome.outcome, outcome.extra["code"]) == ("rejected", "too_many_externals")
    assert "21" in outcome.reason and "20" in outcome.reason


def test_a_request_invites_only_valid_addresses():
    from scheduler.mail.requests import parse_request

    body = "Eksterne: mor@\x00examp\u00bee.org, far@example.org\r\nPeriode: 2027-02-01 - 2027-02-05\r\n"
    parsed = parse_mail(request_mail("2027-02-01 - 2027-02-05").replace(b"Eksterne: mor@example.org",
                                                                         body.encode()))
    request = parse_request(parsed, lambda a: a.endswith("@kommune.example"), at("2027-01-28T08:00").date())
    assert request.external == ("far@example.org",)


def test_book_refuses_too_many_externals(tmp_path, monkeypatch, capsys, key):
    many = ",".join(f"p{n}@example.org" for n in range(21))
    code, out, err = run_cli(monkeypatch, capsys, tmp_path / "data", "book", "network", "--from", "2027-02-01",
                             "--to", "2027-02-05", "--duration", "60", "--required", A, "--external", many,
                             now="2027-01-28T08:00")
    assert code != 0 and "at most 20" in err


# -- item 17: loops ------------------------------------------------------------


def test_mail_from_the_forums_own_address_is_never_answered(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    for n, raw in enumerate((item_mail("150303-4321", "own1", sender="Sparringsforum <sparring@kommune.example>"),
                             item_mail("", "own2", sender="SPARRING@kommune.example"))):
        outcome = ingest(app, raw, f"2027-01-04T08:0{n}")
        assert (outcome.outcome, outcome.extra["code"]) == ("ignored", "own_address")
    dispatcher.run_once()
    assert outbox(tmp_path) == []


def test_the_same_rejection_is_answered_once_an_hour(tmp_path, monkeypatch):
    """A responder answering every rejection ("Re: Afvist ...") gets one an hour."""
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    times = ["08:00", "08:10", "08:50", "09:01", "09:20"]
    outcomes = [ingest(app, item_mail("", f"loop{n}", subject="Re: Afvist: din mail"), f"2027-01-04T{t}")
                for n, t in enumerate(times)]
    assert {(o.outcome, o.extra["code"]) for o in outcomes} == {("rejected", "no_cpr")}
    assert [o.extra["answered"] for o in outcomes] == [True, False, False, True, False]
    other = ingest(app, item_mail("320303-4321", "other"), "2027-01-04T09:21")  # another reason: answered
    assert other.extra["code"] == "cpr_date" and other.extra["answered"]
    dispatcher.run_once(limit=100)
    assert len(outbox(tmp_path)) == 3


# -- item 18: slow headers -------------------------------------------------------


def test_a_huge_encoded_subject_is_never_decoded_and_the_mail_is_rejected(tmp_path, monkeypatch):
    """70,000 encoded words (1 MB) took 4 s in decode_header, growing with the
    square of the size: nothing over MAX_HEADER characters reaches it."""
    seen = []
    real = parse_module.decode_header
    monkeypatch.setattr(parse_module, "decode_header", lambda value: seen.append(len(value)) or real(value))
    subject = " ".join(["=?utf-8?q?a=C3=A6?="] * 70_000)
    raw = (f"From: {ANNE}\r\nSubject: {subject}\r\nMessage-ID: <huge@x>\r\n\r\nCPR: 150303-4321\r\n").encode()
    parsed = parse_mail(raw, max_bytes=10_000_000)
    assert parsed.kind is MailKind.HEADER_TOO_LONG and parsed.sender == ANNE
    assert parse_mail(raw).kind is MailKind.HEADER_TOO_LONG  # over max_bytes: read by its headers alone
    assert all(n <= MAX_HEADER for n in seen)
    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    outcome = Intake(app).process(IncomingMail("huge", raw, app.now()))
    assert (outcome.outcome, outcome.extra["code"]) == ("rejected", "header_too_long")


def test_a_huge_from_gives_no_sender():
    raw = item_mail("150303-4321", "x", sender="Anne " * 5_000 + f"<{ANNE}>")
    assert parse_mail(raw).sender == ""


def test_subjects_of_usual_length_are_decoded_as_before():
    subject = " ".join(["=?utf-8?q?=C3=85se?="] * 50)
    parsed = parse_mail(item_mail("150303-4321", "x", subject=subject))
    assert parsed.kind is MailKind.ITEM and parsed.subject == "Åse" * 50
