"""Issue 14 item 2: what the service does when a server or the disk fails.

Each test puts a real component out of action: the SMTP server refuses
every recipient, a PostgreSQL cluster of the test's own is stopped, has
its connections killed mid-batch or fails over to a promoted standby,
SQLite meets its page limit (SQLite's own "database or disk is full"), the
outbox folder's writes meet ENOSPC, the clock steps back and forward. The
answer is always the same: it waits, says so once, retries, and loses
nothing, sends nothing twice.
"""

from __future__ import annotations

import email
import errno
import logging
import os
import signal
import time
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from scheduler import jobs
from scheduler.daemon import Daemon
from scheduler.mail.folder import FolderSource
from scheduler.mail.smtp import SmtpTransport
from scheduler.services import deadlines
from scheduler.services.dispatch import Dispatcher
from scheduler.services.intake import Intake
from scheduler.store.db import connection_lost
from scheduler.store.tables import Mail, OutboxEntry, SessionState
from scheduler.store.keys import new_key
from scheduler.tls import client_context
from tests.appkit import at, build, ingest, item_mail
from tests.daemonkit import CPR_LIKE, Proc, drop_mail, eml_files, environment, outbox_kind, wait_for, write_config
from tests.servers.postgres import standby_of

SESSION = "unge/2027-01-07"  # its deadline: Monday 2027-01-04 12:00
COORDINATOR = "koordinator.unge@kommune.example"


def _smtp(server) -> SmtpTransport:
    return SmtpTransport(server.host, server.port, "starttls", timeout=10, local_hostname="localhost",
                         ssl_context=client_context(server.ca_file), username=server.user,
                         password=server.password)


def _agendas_sent(server) -> list[email.message.Message]:
    found = [email.message_from_bytes(m.data) for m in server.messages]
    return [m for m in found if "Dagsorden" in _decoded_subject(m)]


def _decoded_subject(message) -> str:
    return str(email.header.make_header(email.header.decode_header(message["Subject"])))


def _outbox(app) -> list[tuple[str, str, int]]:
    with app.transaction() as repo:
        return [(e.kind, e.status, e.attempts) for e in repo.db.scalars(select(OutboxEntry))]


# -- an agenda due during a mail server outage --------------------------------


def test_agenda_due_during_a_mail_server_outage_goes_out_marked_late(tmp_path, monkeypatch, smtp):
    app, local = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    dispatcher = Dispatcher(app, _smtp(smtp), local.calendar)
    try:
        ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
        for address in (COORDINATOR, "koordinator.social@kommune.example", "karen@kommune.example"):
            smtp.refuse(address, "451 4.3.0 Mail server unavailable")  # the outage: every recipient deferred
        app.clock.set(at("2027-01-04T12:00"))
        assert deadlines.send_agenda(app, SESSION)
        dispatcher.run_once()
        app.clock.set(at("2027-01-04T14:00"))
        dispatcher.run_once()
        assert _agendas_sent(smtp) == []

        smtp.reset()  # the server is back
        app.clock.set(at("2027-01-04T15:00"))
        dispatcher.run_once()
    finally:
        dispatcher.transport.close()
    agendas = _agendas_sent(smtp)
    assert len(agendas) == 2
    for message in agendas:
        assert "Dagsorden (sendt efter fristen)" in _decoded_subject(message)
        text = message.get_payload()[0].get_payload(decode=True).decode()
        assert "mailserveren ikke kunne nås" in text
    with app.transaction() as repo:
        state = repo.db.get(SessionState, SESSION)
        assert state.agenda_sent_at == at("2027-01-04T12:00") and not state.agenda_late


def test_agenda_delivered_in_time_is_not_marked_late(tmp_path, monkeypatch, smtp):
    app, local = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    dispatcher = Dispatcher(app, _smtp(smtp), local.calendar)
    try:
        ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
        app.clock.set(at("2027-01-04T12:00"))
        assert deadlines.send_agenda(app, SESSION)
        app.clock.set(at("2027-01-04T12:04"))  # a retry inside the five minutes
        dispatcher.run_once()
    finally:
        dispatcher.transport.close()
    subjects = [_decoded_subject(m) for m in _agendas_sent(smtp)]
    assert subjects and all(s.startswith("Dagsorden: ") for s in subjects)


# -- the clock steps ------------------------------------------------------------


class _Jobs:
    """APScheduler's add_job, recorded: the date jobs the daemon would hold."""

    def __init__(self) -> None:
        self.jobs: dict[str, tuple] = {}

    def add_job(self, func, trigger, run_date=None, args=(), id=None, **_):
        self.jobs[id] = (run_date, args)


def test_a_clock_that_steps_back_or_forward_fires_each_deadline_once(tmp_path, monkeypatch):
    """The agenda job keys on the session (its state row), not on the firing:
    after a step back the re-published job fires again and sends nothing; a
    step forward over a deadline fires it late (and ``catch_up`` takes a
    deadline whose job was lost), never skipped."""
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    recorder = _Jobs()
    jobs.RUNTIME = jobs.Runtime(app, dispatcher, recorder)
    try:
        ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00")
        jobs.publish()
        assert recorder.jobs[f"agenda:{SESSION}"][0] == at("2027-01-04T12:00")
        app.clock.set(at("2027-01-04T12:00"))
        jobs.agenda(SESSION)  # fires at the deadline
        app.clock.set(at("2027-01-04T10:30"))  # NTP steps the clock back 90 minutes
        recorder.jobs.clear()
        jobs.publish()  # the morning's publish re-adds the job: its deadline lies ahead again
        assert f"agenda:{SESSION}" in recorder.jobs
        app.clock.set(at("2027-01-04T12:00"))
        jobs.agenda(SESSION)  # fires a second time
        jobs.catch_up()
        # Forward: from Sunday night past Monday 11 Jan 12:00 (voksne/2027-01-13 and unge/2027-01-14).
        app.clock.set(at("2027-01-10T23:00"))
        jobs.publish()
        app.clock.set(at("2027-01-11T15:00"))
        jobs.agenda("voksne/2027-01-13")  # its job fires late, at once
        jobs.catch_up()  # unge/2027-01-14's job was lost with the step: caught up, not skipped
        jobs.catch_up()
    finally:
        jobs.RUNTIME = None
    social = [_decoded_subject(m) for m in _outbox_mails(tmp_path)
              if "koordinator.social@kommune.example" in str(m["To"]) and "Dagsorden" in _decoded_subject(m)]
    assert sorted(social) == sorted(set(social)), "an agenda went twice"
    assert len(social) == 3, social
    assert sum("efter fristen" in s for s in social) == 2, social
    with app.transaction() as repo:
        assert repo.db.get(SessionState, SESSION).agenda_sent_at == at("2027-01-04T12:00")


def _outbox_mails(data_dir) -> list[email.message.Message]:
    return [email.message_from_bytes(p.read_bytes()) for p in eml_files(data_dir / "outbox")]


# -- disk full ------------------------------------------------------------------


def _drop(inbox, count: int, prefix: str = "m") -> None:
    for n in range(count):
        drop_mail(inbox, f"{prefix}{n}", item_mail(f"1503{n:02d}-43{n:02d}", f"{prefix}{n}",
                                                   sender=f"karen{n}@kommune.example"),
                  at("2027-01-04T08:00") + timedelta(minutes=n))


def _cap_pages(engine, limit: dict) -> None:
    """SQLite's own page limit stands for a full disk: every connection
    checked out gets ``PRAGMA max_page_count`` (the current size: no growth)."""

    @event.listens_for(engine, "checkout")
    def _cap(dbapi_connection, _record, _proxy):
        cursor = dbapi_connection.cursor()
        size = cursor.execute("PRAGMA page_count").fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count={size if limit['full'] else 1 << 30}")
        cursor.close()


def _lines(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_sqlite_disk_full_refuses_new_mail_with_one_line_loses_nothing_and_resumes(tmp_path, monkeypatch, caplog):
    app, _ = build(tmp_path, "2027-01-04T09:00", monkeypatch)
    daemon, intake, source = Daemon(app, poll_seconds=0.01), Intake(app), FolderSource(tmp_path / "inbox")
    limit = {"full": True}
    _cap_pages(app.engine, limit)
    app.engine.dispose()  # connections opened before the cap
    _drop(tmp_path / "inbox", 12)
    caplog.set_level(logging.INFO)
    try:
        for _ in range(4):  # round after round: a failing mail would be quarantined
            assert daemon._intake_once(intake, source) is False
        assert len(eml_files(tmp_path / "inbox")) == 12, "the mail stays in the mailbox"
        assert not eml_files(tmp_path / "quarantine"), "a full disk is not the mail's fault"
        [line] = _lines(caplog, "disk full")
        assert "SQLite database" in line and "nothing is lost" in line

        limit["full"] = False  # space is back
        app.engine.dispose()
        assert daemon._intake_once(intake, source) is True
    finally:
        intake.close()
    assert len(_lines(caplog, "disk full")) == 1
    assert len(_lines(caplog, "disk space is back")) == 1
    assert not eml_files(tmp_path / "inbox") and len(eml_files(tmp_path / "processed")) == 12
    with app.transaction() as repo:
        assert repo.db.scalar(select(func.count()).select_from(Mail)) == 12
    receipts = [p for p in eml_files(tmp_path / "outbox") if "-receipt-" in p.name]
    assert len(receipts) == 12


def test_outbox_folder_disk_full_waits_past_max_attempts_and_resumes(tmp_path, monkeypatch, caplog):
    """ENOSPC from the file layer (the outbox folder's fsync), for longer than
    the entry's attempts would allow: it stays queued, one line is logged,
    and it goes once there is space."""
    app, dispatcher = build(tmp_path, "2027-01-04T09:00", monkeypatch)
    ingest(app, item_mail("150303-4321", "a"), "2027-01-04T09:00")
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    caplog.set_level(logging.INFO)
    for _ in range(app.config.outbox.max_attempts + 3):
        dispatcher.run_once()
        app.clock.advance(timedelta(seconds=app.config.outbox.backoff_max_seconds))
    receipts = [e for e in _outbox(app) if e[0] == "receipt"]
    assert receipts and all(status == "pending" for _, status, _ in receipts), receipts
    assert max(attempts for *_, attempts in receipts) > app.config.outbox.max_attempts
    assert not list((tmp_path / "outbox").iterdir()), "no half-written file left"
    [line] = _lines(caplog, "disk full")
    assert "outbox folder" in line

    monkeypatch.setattr(os, "fsync", real_fsync)  # space is back
    app.clock.advance(timedelta(seconds=app.config.outbox.backoff_max_seconds))
    dispatcher.run_once()
    assert {status for kind, status, _ in _outbox(app) if kind == "receipt"} == {"done"}
    assert len([p for p in eml_files(tmp_path / "outbox") if "-receipt-" in p.name]) == 1
    assert len(_lines(caplog, "disk space is back")) == 1
    assert not _lines(caplog, "failed permanently")


# -- PostgreSQL lost, and failed over -----------------------------------------


class _Cutter:
    """Kills the PostgreSQL backend of the connection a batch runs on, from
    another connection (``pg_terminate_backend``), just before the batch's
    ``at``-th statement: the server side of "lost mid-transaction"."""

    def __init__(self, engine, cluster) -> None:
        self.cluster, self.at, self.count, self.cuts = cluster, set(), 0, 0
        event.listen(engine, "before_cursor_execute", self._before)

    def arm(self, *at: int) -> None:
        self.at, self.count = set(at), 0

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.count += 1
        if self.count in self.at:
            self.cuts += 1
            self.cluster.sql(f"SELECT pg_terminate_backend({conn.connection.dbapi_connection.info.backend_pid}, 10000)")


def _postgres_app(tmp_path, monkeypatch, cluster):
    cluster.sql("CREATE DATABASE sparring")
    return build(tmp_path, "2027-01-04T09:00", monkeypatch, db_url=cluster.url("sparring"))


def test_postgresql_lost_mid_batch_decides_the_batch_again_and_nothing_twice(tmp_path, monkeypatch, own_postgres):
    """The connection killed at several points of a batch, round after
    round: each round rolls back whole (no per-mail pass, which would blame
    each mail), the mail stays in the inbox, never counted as poison, and
    the round after the server holds decides every mail once, with one
    receipt each."""
    app, dispatcher = _postgres_app(tmp_path, monkeypatch, own_postgres)
    intake, source = Intake(app), FolderSource(tmp_path / "inbox")
    _drop(tmp_path / "inbox", 8)
    cutter = _Cutter(app.engine, own_postgres)
    try:
        for statement in (3, 9, 15, 21):  # early and late in the batch, and in a per-mail pass
            cutter.arm(statement, statement + 6)
            with pytest.raises(Exception) as raised:
                intake.run(source)
            assert connection_lost(raised.value), raised.value
            assert len(eml_files(tmp_path / "inbox")) == 8
        cutter.arm()
        assert len(intake.run(source)) == 8
    finally:
        intake.close()
    assert cutter.cuts >= 4
    assert not eml_files(tmp_path / "inbox") and not eml_files(tmp_path / "quarantine")
    with app.transaction() as repo:
        assert repo.db.scalar(select(func.count()).select_from(Mail)) == 8
        receipts = [e for e in repo.db.scalars(select(OutboxEntry)) if e.kind == "receipt"]
    assert len(receipts) == 8 and len({e.dedupe_key for e in receipts}) == 8
    dispatcher.run_once()
    assert len([p for p in eml_files(tmp_path / "outbox") if "-receipt-" in p.name]) == 8


def test_failover_to_a_promoted_standby_within_the_lease_time(tmp_path, own_postgres):
    """``storage.url`` names both servers (``host=`` twice) with
    ``target_session_attrs=read-write``; the primary dies, the synchronous
    standby is promoted (``pg_ctl promote``), and the running daemon carries
    on against it inside its lease's TTL: nothing it committed is lost, the
    mail that came meanwhile is answered, and it never gives up its lease."""
    ttl, renew = 20, 1  # the answer must come within the lease; 20 s leaves room on a loaded machine
    primary = own_postgres
    primary.sql("CREATE DATABASE sparring")
    standby = standby_of(primary)
    try:
        url = (f"postgresql+psycopg://{primary.user}@/sparring?host=127.0.0.1:{primary.port}"
               f"&host=127.0.0.1:{standby.port}&target_session_attrs=read-write")
        config = write_config(tmp_path / "sparring.toml", storage_url=url)
        env = environment(new_key(), SPARRING_LEASE_TTL=str(ttl), SPARRING_LEASE_RENEW=str(renew))
        data = tmp_path / "var"
        daemon = Proc(data, "run", env=env, config=config, log_path=tmp_path / "daemon.log")
        try:
            daemon.wait_log(r'msg="running holder=', 60)
            drop_mail(data / "inbox", "before", item_mail("150303-4321", "f1"))
            wait_for(lambda: len(outbox_kind(data, "receipt")) == 1, 30, "the first receipt")
            primary.stop()  # immediate: as if it died
            lost = time.monotonic()
            daemon.wait_log("database unreachable", renew + 10)
            standby.promote()
            drop_mail(data / "inbox", "after", item_mail("110698-2345", "f2"))
            wait_for(lambda: len(outbox_kind(data, "receipt")) == 2 and not eml_files(data / "inbox"),
                     ttl, "the mail answered against the promoted standby")
            assert time.monotonic() - lost < ttl
            daemon.wait_log("database reachable again", 10)
            assert daemon.running()
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(20) == 0
        finally:
            daemon.close()
        log = daemon.log()
        assert "lease lost" not in log and "lease lapsed" not in log
        assert log.count("database unreachable") == 1
        assert not CPR_LIKE.search(log)
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=standby.port, user=standby.user, dbname="sparring") as conn:
            assert conn.execute("SELECT count(*) FROM mails").fetchone()[0] == 2
            assert conn.execute("SELECT count(*) FROM outbox WHERE kind = 'receipt'").fetchone()[0] == 2
    finally:
        standby.remove()
