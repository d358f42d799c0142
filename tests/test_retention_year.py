"""Issue 13.4 and 13.9: retention verified end to end over a simulated year.

Every week a caseworker's mail arrives through the inbox folder, is settled,
answered, put on an agenda that goes out at the deadline; the nightly purge
runs weekly. With ``storage.retention_days = 30`` nothing of a week older
than that may remain anywhere sparring writes (the database, its raw files,
the data directory, the logs); only the audit trail (no personal data) and
anonymous counts remain. Each week's text carries a marker to look for.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from sqlalchemy import func, select, text

from scheduler.config import load_config
from scheduler.mail.folder import FolderSource
from scheduler.services import deadlines
from scheduler.services.intake import Intake
from scheduler.services.retention import purge
from scheduler.store import audit
from scheduler.store.tables import AuditEntry, Item, Mail, OutboxEntry
from tests.appkit import CONFIG, at, build

WEEKS = 52
RETENTION = 30


def _cpr(week: int) -> str:
    """A valid, fictitious CPR number per week (born 2003: the young series)."""
    return f"{1 + week % 28:02d}{1 + week // 28:02d}03-{4000 + week}"


def _mail(week: int) -> bytes:
    return (f"From: karen@kommune.example\r\nTo: sparring@kommune.example\r\nSubject: Sparring\r\n"
            f"Message-ID: <w{week}@kommune.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"CPR: {_cpr(week)}\r\nHelbred: Angst MARKW{week:02d}.\r\nSociale udfordringer: Gæld.\r\n").encode()


def _needles(week: int) -> list[bytes]:
    cpr = _cpr(week)
    return [f"MARKW{week:02d}".encode(), cpr.encode(), cpr.replace("-", "").encode(), f"{cpr[:6]}-xxxx".encode()]


def _live_year(tmp_path, monkeypatch, db_url=None):
    config = load_config(CONFIG)
    config = config.model_copy(update={"storage": config.storage.model_copy(update={"retention_days": RETENTION})})
    app, dispatcher = build(tmp_path, "2027-01-03T08:00", monkeypatch, config=config, db_url=db_url)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = FolderSource(inbox)
    intake = Intake(app)
    for week in range(WEEKS):
        monday = at("2027-01-04T09:00") + timedelta(weeks=week)
        path = inbox / f"w{week:02d}.eml"
        path.write_bytes(_mail(week))
        os.utime(path, (monday.timestamp(), monday.timestamp()))  # its arrival
        app.clock.set(monday)
        intake.run(source)
        dispatcher.run_once()
        app.clock.set(monday.replace(hour=12))
        for session in deadlines.agenda_due(app, monday - timedelta(days=7), monday.replace(hour=12)):
            deadlines.send_agenda(app, session.key)
        dispatcher.run_once()
        app.clock.set(monday + timedelta(days=1, hours=-6))  # Tuesday 03:00: the nightly purge
        purge(app)
    end = at("2028-01-03T03:00")
    app.clock.set(end)
    purge(app)
    return app, end


def _raw_data_dir(tmp_path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_a_year_with_30_days_retention_leaves_nothing_older(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    app, end = _live_year(tmp_path, monkeypatch)
    cutoff = end - timedelta(days=RETENTION)
    with app.transaction() as repo:
        assert repo.db.scalar(select(func.count()).select_from(Item).where(Item.session_start < cutoff)) == 0
        assert repo.db.scalar(select(func.count()).select_from(Mail).where(Mail.received_at < cutoff)) == 0
        assert repo.db.scalar(select(func.count()).select_from(OutboxEntry)
                              .where(OutboxEntry.created_at < cutoff - timedelta(days=RETENTION))) == 0
        kept = repo.db.scalar(select(func.count()).select_from(Item))
        trail = repo.db.scalar(select(func.count()).select_from(AuditEntry))
    assert kept >= 1, "the last weeks' items are still there: the test can see what it looks for"
    assert trail > WEEKS * 3, "the trail outlives the data"
    raw = _raw_data_dir(tmp_path)  # database file, WAL, settled mails, outbox copies, calendar
    old_weeks = [w for w in range(WEEKS) if at("2027-01-04T09:00") + timedelta(weeks=w, days=10) < cutoff]
    assert len(old_weeks) >= 45
    for week in old_weeks:
        for needle in _needles(week):
            assert needle not in raw, (week, needle)
    processed = b"".join(p.read_bytes() for p in (tmp_path / "processed").iterdir())
    assert _needles(WEEKS - 1)[0] in processed, "the newest source mail is kept (within the period)"
    # Neither the database file nor any log line ever held a CPR number or the health text.
    database = b"".join(p.read_bytes() for p in tmp_path.glob("sparring.db*"))
    logs = caplog.text.encode()
    for week in range(WEEKS):
        for needle in _needles(week)[:3]:
            assert needle not in database and needle not in logs, (week, needle)
    with app.connection() as connection:
        assert audit.verify(connection, app.cipher).ok


def test_postgresql_raw_files_hold_no_cpr_or_health_text(tmp_path, monkeypatch, postgres_server):
    name = f"year{os.getpid()}"
    postgres_server.sql(f"CREATE DATABASE {name}")
    try:
        app, _ = _live_year(tmp_path, monkeypatch, db_url=postgres_server.url(name))
        with app.connection() as connection:
            connection.execute(text("CHECKPOINT"))
            assert connection.execute(select(func.count()).select_from(Item)).scalar() >= 1
        app.engine.dispose()
        raw = b"".join(p.read_bytes() for p in postgres_server.data_dir.rglob("*") if p.is_file())
        for week in range(WEEKS):
            for needle in _needles(week)[:3]:
                assert needle not in raw, (week, needle)
    finally:
        postgres_server.sql(f"DROP DATABASE {name} WITH (FORCE)")


def test_the_markers_are_findable_where_they_are_plain(tmp_path):
    """The raw scans above can fail: a marker written in plain is found."""
    (tmp_path / "x.eml").write_bytes(_mail(3))
    raw = _raw_data_dir(tmp_path)
    assert _needles(3)[0] in raw and _needles(3)[1] in raw
