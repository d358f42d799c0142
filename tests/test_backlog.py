"""The backlog warning and the extra session (issue 16, item 4).

The weekly series "unge" (Thursdays 10:00, 6 slots, deadline Monday 12:00)
on Monday 4 January 2027: 14 items fill the sessions of 7 and 14 January
and 2 wait for the 21st. The coordinators are free (no personal calendars:
unknown, which never blocks), so the first proposal is Tuesday 5 January
09:00, the next working day at the start of the working hours.
"""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
from sqlalchemy import select

from scheduler.cli import main
from scheduler.services import backlog
from scheduler.store.tables import BacklogEpisode, ExtraSession
from tests.appkit import CONFIG, at, build, ingest, item_mail
from tests.test_booking import busy_file
from tests.test_decisions import body, calendars, messages, reply

COORDINATOR, OTHER = "koordinator.social@kommune.example", "koordinator.unge@kommune.example"
KAREN, BO = "karen@kommune.example", "bo@kommune.example"
CPR_ANYWHERE = re.compile(r"\d{6}-?\d{4}")
EXTRA = "unge/2027-01-05"


def cpr(n: int) -> str:
    """Born 2000-2005 (21-27 years old in 2027), distinct per ``n``."""
    return f"{n % 28 + 1:02d}{n % 12 + 1:02d}0{n % 6}4{n:03d}"


@pytest.fixture
def full(tmp_path, monkeypatch):
    return fill(tmp_path, monkeypatch)


def fill(tmp_path, monkeypatch, db_url=None):
    """14 items on Monday morning: two sessions full, two items waiting. (app, dispatcher)"""
    app, dispatcher = build(tmp_path, "2027-01-04T07:00", monkeypatch, db_url=db_url)
    for n in range(14):
        outcome = ingest(app, item_mail(cpr(n), f"item{n}", sender=BO if n % 2 else KAREN),
                         f"2027-01-04T07:{n + 1:02d}")
        assert outcome.outcome in ("accepted", "moved"), outcome
    dispatcher.run_once(limit=1000)
    return app, dispatcher


def warnings_sent(tmp_path):
    return [m for m in messages(tmp_path) if str(m["Subject"]).startswith("Kø i ")]


def keys(app, session_key):
    with app.transaction() as repo:
        return [i.id for i in repo.items_of_session(session_key)]


def test_a_full_queue_warns_the_coordinators_once_with_a_proposal(full, tmp_path):
    app, dispatcher = full
    assert backlog.queue_depth(app, "unge", app.now()) == 2
    assert backlog.queue_depth(app, "voksne", app.now()) == 0
    (warning,) = backlog.check(app)
    for minute in range(10):  # checked again and again: the same episode
        app.clock.set(at(f"2027-01-04T08:{minute:02d}"))
        assert backlog.check(app) == []
    dispatcher.run_once(limit=100)
    assert (warning.series_id, warning.depth, warning.waiting) == ("unge", 2, 2)
    assert warning.proposed == at("2027-01-05T09:00")
    (mail,) = warnings_sent(tmp_path)
    assert str(mail["Subject"]).endswith("[Ekstra unge 2027-01-05 09:00]") and mail["Subject"] == warning.subject
    assert set(str(mail["To"]).split(", ")) == {COORDINATOR, OTHER}
    text = body(mail)
    assert "2 punkter venter" in text and "tirsdag den 5. januar 2027 kl. 09.00" in text
    assert "Ekstra møde: ja" in text and not CPR_ANYWHERE.search(text)


def test_the_episode_ends_when_the_queue_is_no_longer_full_and_a_new_one_warns_again(full, tmp_path):
    app, dispatcher = full
    assert len(backlog.check(app)) == 1
    app.clock.set(at("2027-01-04T12:30"))  # the deadline of the 7th passed: one full session left taking items
    assert backlog.queue_depth(app, "unge", app.now()) == 1
    assert backlog.check(app) == []
    with app.transaction() as repo:
        assert repo.db.scalars(select(BacklogEpisode)).one().closed_at == at("2027-01-04T12:30")
    for n in range(14, 19):  # the 21st fills up behind the 14th, and one more waits
        ingest(app, item_mail(cpr(n), f"more{n}"), f"2027-01-05T08:{n:02d}")
    assert backlog.queue_depth(app, "unge", app.now()) == 2
    (second,) = backlog.check(app)
    assert (second.depth, second.waiting) == (2, 1)
    dispatcher.run_once(limit=100)
    assert len(warnings_sent(tmp_path)) == 2


def test_a_coordinators_ja_adds_the_extra_session_published_invited_and_filled_in_order(tmp_path, monkeypatch,
                                                                                        db_url):
    app, dispatcher = fill(tmp_path, monkeypatch, db_url)
    (warning,) = backlog.check(app)
    waiting = keys(app, "unge/2027-01-21")
    assert len(waiting) == 2
    outcome = ingest(app, reply(warning.subject, "Hej\r\n\r\nekstra MODE:  Ja", "ja1"), "2027-01-04T08:30")
    assert (outcome.outcome, outcome.series) == ("accepted", "unge")
    dispatcher.run_once(limit=1000)
    session = app.session_by_key(EXTRA)
    assert (session.start, session.note, session.extra, session.planned) == (at("2027-01-05T09:00"), "ekstra", True, True)
    assert session.deadline == at("2027-01-04T12:00"), "the day before at the series' deadline hour"
    assert session in app.sessions_from(at("2027-01-04T09:00"))
    assert keys(app, EXTRA) == waiting, "the waiting items, in their order"
    assert keys(app, "unge/2027-01-21") == []
    with app.transaction() as repo:
        (row,) = repo.db.scalars(select(ExtraSession)).all()
        assert (row.series_id, row.added_by, row.source_message) == ("unge", COORDINATOR, "ja1@kommune.example")
    sent = messages(tmp_path)
    # published and invited: the coordinators' invitation to the extra session
    invitation = next(m for m in sent if any("ekstra møde" in str(e.get("SUMMARY")) for c in calendars(m)
                                             for e in c.walk("VEVENT")))
    assert set(str(invitation["To"]).split(", ")) == {COORDINATOR, OTHER}
    assert list((tmp_path / "calendar").glob("*extra-unge-2027-01-05*")), "the calendar holds it"
    # the caseworkers told their new slot, the slot invitations moved
    moved = [m for m in sent if str(m["Subject"]).startswith("Flyttet: punkt til ekstra møde")]
    assert len(moved) == 2 and "kl. 09.00-09.10" in body(moved[0]) + body(moved[1])
    slots = [e for m in sent for c in calendars(m) for e in c.walk("VEVENT")
             if "din tid" in str(e.get("SUMMARY")) and e.decoded("DTSTART") >= at("2027-01-05T09:00")
             and e.decoded("DTSTART") < at("2027-01-05T10:00")]
    assert len(slots) == 2
    answer = next(m for m in sent if m["In-Reply-To"] == "<ja1@kommune.example>")
    assert str(answer["Subject"]).startswith("Ekstra møde oprettet") and "2 ventende punkter" in body(answer)
    for message in sent:
        assert not CPR_ANYWHERE.search(str(message["Subject"]))


def test_plan_shows_the_extra_session_with_its_note(full, tmp_path):
    app, dispatcher = full
    (warning,) = backlog.check(app)
    ingest(app, reply(warning.subject, "Ekstra møde: ja", "ja1"), "2027-01-04T08:30")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--config", str(CONFIG), "--data-dir", str(tmp_path), "--now", "2027-01-04T09:00",
                     "plan", "--from", "2027-01-04", "--to", "2027-01-10", "--series", "unge", "--json"]) == 0
    rows = json.loads(out.getvalue())
    assert [(r["start"], r["status"], r["note"]) for r in rows] == [
        ("2027-01-05T09:00:00+01:00", "planned", "ekstra"), ("2027-01-07T10:00:00+01:00", "planned", None)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["--config", str(CONFIG), "--data-dir", str(tmp_path), "plan", "--from", "2027-01-05", "--to",
              "2027-01-05"])
    assert "planned  (ekstra)" in out.getvalue()


def test_a_strangers_reply_is_quarantined_and_adds_nothing(full, tmp_path):
    app, dispatcher = full
    (warning,) = backlog.check(app)
    assert ingest(app, reply(warning.subject, "Ekstra møde: ja", "s1", sender=KAREN),
                  "2027-01-04T08:30").outcome == "quarantined"
    assert ingest(app, reply("[Ekstra voksne 2027-01-05 09:00]", "Ekstra møde: ja", "s2", sender=OTHER),
                  "2027-01-04T08:31").outcome == "quarantined", "a coordinator of another series"
    assert app.planner.extras == ()
    with app.transaction() as repo:
        assert repo.db.scalars(select(ExtraSession)).all() == []


def test_a_second_ja_adds_no_second_session_and_nej_declines(full, tmp_path):
    app, dispatcher = full
    (warning,) = backlog.check(app)
    ingest(app, reply(warning.subject, "Ekstra møde: ja", "ja1"), "2027-01-04T08:30")
    ingest(app, reply(warning.subject, "Ekstra møde: ja", "ja2", sender=OTHER), "2027-01-04T08:40")
    dispatcher.run_once(limit=1000)
    with app.transaction() as repo:
        assert len(repo.db.scalars(select(ExtraSession)).all()) == 1
    assert len(app.planner.extras) == 1
    second = next(m for m in messages(tmp_path) if m["In-Reply-To"] == "<ja2@kommune.example>")
    assert "allerede oprettet" in body(second)
    unreadable = ingest(app, reply(warning.subject, "Tak", "what"), "2027-01-04T08:50")
    assert unreadable.outcome == "rejected" and "Ekstra møde: ja" in unreadable.reason


def test_nej_declines_and_the_episode_stays_quiet(full, tmp_path):
    app, dispatcher = full
    (warning,) = backlog.check(app)
    ingest(app, reply(warning.subject, "Ekstra møde: nej", "nej"), "2027-01-04T08:30")
    assert app.planner.extras == () and backlog.check(app) == []
    with app.transaction() as repo:
        assert repo.db.scalars(select(BacklogEpisode)).one().answer == "no"


def test_a_time_no_longer_free_gets_a_new_proposal_in_the_answer(full, tmp_path):
    app, dispatcher = full
    (warning,) = backlog.check(app)
    busy_file(tmp_path, COORDINATOR, ("20270105T080000", "20270105T100000"))
    busy_file(tmp_path, OTHER)
    ingest(app, reply(warning.subject, "Ekstra møde: ja", "ja1"), "2027-01-04T08:30")
    dispatcher.run_once(limit=1000)
    assert app.planner.extras == ()
    answer = next(m for m in messages(tmp_path) if m["In-Reply-To"] == "<ja1@kommune.example>")
    assert str(answer["Subject"]).endswith("[Ekstra unge 2027-01-05 10:00]")
    ingest(app, reply(str(answer["Subject"]), "Ekstra møde: ja", "ja2"), "2027-01-04T08:40")
    assert app.session_by_key(EXTRA).start == at("2027-01-05T10:00")


def test_the_extra_sessions_agenda_goes_out_at_its_deadline(full, tmp_path):
    from scheduler.services import deadlines

    app, dispatcher = full
    (warning,) = backlog.check(app)
    ingest(app, reply(warning.subject, "Ekstra møde: ja", "ja1"), "2027-01-04T08:30")
    due = [s.key for s in deadlines.agenda_due(app, at("2027-01-04T09:00"), at("2027-01-04T13:00"))]
    assert EXTRA in due
    app.clock.set(at("2027-01-04T12:00"))
    assert deadlines.send_agenda(app, EXTRA)
    dispatcher.run_once(limit=1000)
    agenda = next(m for m in messages(tmp_path) if str(m["Subject"]).endswith("[SF unge 2027-01-05]"))
    assert "Punkt 2" in body(agenda)


def _inbox_mail(tmp_path, name: str, raw: bytes, date: str) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / name).write_bytes(raw.replace(b"Subject:", f"Date: {date}\r\nSubject:".encode(), 1))


def test_simulate_over_a_quarter_warns_once_per_episode_and_takes_the_reply(tmp_path, monkeypatch):
    from scheduler.store.keys import new_key

    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    for n in range(14):  # two bursts, a month apart: two episodes
        _inbox_mail(tmp_path, f"jan{n:02d}.eml", item_mail(cpr(n), f"jan{n}"), f"Mon, 04 Jan 2027 07:{n:02d}:00 +0100")
        _inbox_mail(tmp_path, f"feb{n:02d}.eml", item_mail(cpr(n + 40), f"feb{n}"),
                    f"Mon, 01 Feb 2027 07:{n:02d}:00 +0100")
    subject = "Kø i Sparringsforum for borgere op til og med 29 år: forslag om ekstra møde [Ekstra unge 2027-01-05 09:00]"
    _inbox_mail(tmp_path, "ja.eml", reply(subject, "Ekstra møde: ja", "ja1"), "Mon, 04 Jan 2027 10:00:00 +0100")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--config", str(CONFIG), "--data-dir", str(tmp_path), "simulate", "--from", "2027-01-01",
                     "--to", "2027-03-31"]) == 0
    assert "backlog warnings: unge 2; extra sessions added: 1" in out.getvalue()
    warned = [m for m in messages(tmp_path) if str(m["Subject"]).startswith("Kø i ")]
    assert [str(m["Subject"])[-30:] for m in warned] == ["[Ekstra unge 2027-01-05 09:00]",
                                                         "[Ekstra unge 2027-02-02 09:00]"]
    assert any(str(m["Subject"]).endswith("[SF unge 2027-01-05]") for m in messages(tmp_path)), "its agenda went out"


def test_run_once_warns_and_takes_the_reply(full, tmp_path, capsys):
    import os

    app, _ = full
    app.engine.dispose()

    def run_once(now: str) -> None:
        assert main(["--config", str(CONFIG), "--data-dir", str(tmp_path), "--now", now, "run", "--once"]) == 0
        capsys.readouterr()

    run_once("2027-01-04T08:00")
    run_once("2027-01-04T08:10")
    (warning,) = warnings_sent(tmp_path)
    (tmp_path / "inbox").mkdir(exist_ok=True)
    (tmp_path / "inbox" / "ja.eml").write_bytes(reply(str(warning["Subject"]), "Ekstra møde: ja", "ja1"))
    moment = at("2027-01-04T08:20").timestamp()
    os.utime(tmp_path / "inbox" / "ja.eml", (moment, moment))
    run_once("2027-01-04T08:20")
    assert len(warnings_sent(tmp_path)) == 1
    app.reload_sessions()
    assert len(keys(app, EXTRA)) == 2


def test_a_standby_taking_over_knows_the_extra_sessions_added_while_it_waited(tmp_path, monkeypatch):
    """The standby's planner is as old as its start: the extra session the
    active instance added since must be known once it takes over."""
    import threading
    import time

    from scheduler.daemon import Daemon

    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    daemon = Daemon(app, poll_seconds=0.1)  # started, on standby
    with app.transaction() as repo:  # the active instance's "Ekstra møde: ja"
        repo.db.add(ExtraSession(session_key=EXTRA, series_id="unge", start=at("2027-01-05T09:00"),
                                 created_at=app.now(), source_message="<ja1@kommune.example>", added_by=COORDINATOR))
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        waited = time.monotonic()
        while not app.session_by_key(EXTRA).extra and time.monotonic() - waited < 15:
            time.sleep(0.1)
        assert app.session_by_key(EXTRA).extra
    finally:
        daemon.stopping.set()
        runner.join(30)
    assert not runner.is_alive()


@pytest.mark.parametrize("cut", ["still_free", "_move_waiting"])
def test_a_ja_cut_off_after_its_mail_was_filed_is_carried_out_by_the_hourly_check(full, tmp_path, monkeypatch, cut):
    """The answer runs after the commit that files the mail: should it fail there
    (before the session is stored, or between storing and filling it), the held
    answer is taken up by the hourly check, once."""
    app, dispatcher = full
    (warning,) = backlog.check(app)
    waiting = keys(app, "unge/2027-01-21")
    real = getattr(backlog, cut)
    broken = iter([True])

    def fails_once(*args, **kwargs):
        if next(broken, False):
            raise RuntimeError("cut off")
        return real(*args, **kwargs)

    monkeypatch.setattr(backlog, cut, fails_once)
    outcome = ingest(app, reply(warning.subject, "Ekstra møde: ja", "ja1"), "2027-01-04T08:30")
    assert outcome.outcome == "accepted"
    assert keys(app, "unge/2027-01-21") == waiting, "nothing moved yet"
    backlog.check(app, resume=True)
    backlog.check(app, resume=True)
    dispatcher.run_once(limit=1000)
    assert keys(app, EXTRA) == waiting and keys(app, "unge/2027-01-21") == []
    with app.transaction() as repo:
        assert len(repo.db.scalars(select(ExtraSession)).all()) == 1
    answers = [m for m in messages(tmp_path) if m["In-Reply-To"] == "<ja1@kommune.example>"]
    assert len(answers) == 1 and str(answers[0]["Subject"]).startswith("Ekstra møde oprettet")
