"""What ``/metrics`` and ``/healthz`` say (issue 16 item 5), read from the database.

The exposition is parsed back with prometheus_client's own parser; every
expected value is computed from the rows, or from the fake clock's times.
"""

from __future__ import annotations

import re
import threading
from datetime import date, datetime, timedelta
from pathlib import Path

import time_machine
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update

from scheduler import jobs
from scheduler.clock import RunningClock
from scheduler.cpr import has_cpr
from scheduler.sender import Sender
from scheduler.services import access, deadlines, lease, metrics, retention
from scheduler.services.booking import Booker, BookingRequest
from scheduler.store.tables import Lease, Mail, Meta, OutboxEntry
from tests.appkit import at, build, ingest, item_mail

JOBS = ("intake", *metrics.ALLOWED)


def scrape(app) -> dict[tuple[str, tuple], float]:
    """Every sample: (name, sorted labels) -> value."""
    text = generate_latest(metrics.registry(app)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _rows(app, query):
    with app.transaction() as repo:
        return repo.db.execute(query).all()


def traffic(tmp_path, monkeypatch, db_url: str | None = None):
    """Two items and a rejection taken in, their receipts sent 40 to 100 s
    after arrival, a late agenda queued (not sent), one of its mails failed."""
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch, db_url=db_url)
    outcomes = [ingest(app, item_mail("150303-4321", "a"), "2027-01-04T08:00:00").outcome,
                ingest(app, item_mail("110698-2345", "b", sender="bo@kommune.example"), "2027-01-04T08:01:00").outcome,
                ingest(app, b"From: eva@kommune.example\r\nSubject: Sparring\r\nMessage-ID: <c@kommune.example>"
                            b"\r\n\r\nHej\r\n", "2027-01-04T08:01:30").outcome]
    app.clock.set(at("2027-01-04T08:01:40"))
    assert dispatcher.run_once().failed == 0
    with app.transaction() as repo:
        key = repo.pending_sessions(at("2027-01-01T00:00"))[0]
    app.clock.set(app.session_by_key(key).deadline + timedelta(hours=1))
    assert deadlines.send_agenda(app, key)
    with app.transaction() as repo:
        first = repo.db.scalar(select(func.min(OutboxEntry.id)).where(OutboxEntry.kind == "agenda"))
        repo.db.execute(update(OutboxEntry).where(OutboxEntry.id == first).values(status="failed"))
    return app, dispatcher, outcomes


def test_the_metrics_after_intake_and_sending_are_those_of_the_database(tmp_path, monkeypatch):
    app, _, outcomes = traffic(tmp_path, monkeypatch)
    got = scrape(app)
    assert outcomes == ["accepted", "accepted", "rejected"]
    assert sample(got, "sparring_mails_total", outcome="accepted") == 2
    assert sample(got, "sparring_mails_total", outcome="rejected") == 1
    assert sample(got, "sparring_mails_total", outcome="quarantined") == 0
    # Receipts sent at 08:01:40: 100 s, 40 s and 10 s after arrival.
    assert [sample(got, "sparring_receipt_latency_seconds_bucket", le=le) for le in ("5", "15", "60", "120", "+Inf")] \
        == [0, 1, 2, 3, 3]
    assert sample(got, "sparring_receipt_latency_seconds_count") == 3
    assert sample(got, "sparring_receipt_latency_seconds_sum") == 150
    status = dict(_rows(app, select(OutboxEntry.status, func.count()).group_by(OutboxEntry.status)))
    assert status["failed"] >= 1 and status["pending"] >= 1
    assert sample(got, "sparring_outbox_failed") == status["failed"]
    assert sample(got, "sparring_outbox_pending") == status["pending"]
    assert sample(got, "sparring_agendas_sent_total") == 1
    assert sample(got, "sparring_agendas_late_total") == 1
    calendar = _rows(app, select(func.count()).where(OutboxEntry.kind == "calendar", OutboxEntry.status == "done"))
    assert calendar[0][0] > 0 and sample(got, "sparring_calendar_writes_total") == calendar[0][0]


def test_nothing_personal_in_the_metrics_or_the_health_sentences(tmp_path, monkeypatch):
    app, _, _ = traffic(tmp_path, monkeypatch)
    with app.transaction() as repo:
        repo.db.add(Lease(name="daemon", holder="sparring-1.kommune.example:4242", expires_at=app.now()))
    text = generate_latest(metrics.registry(app)).decode()
    sentences = " ".join(sentence for _, _, sentence in metrics.health(app).checks)
    assert "sparring_mails_total" in text and "lease" in sentences
    for shown in (text, sentences):
        assert not has_cpr(shown)
        assert "@" not in shown  # no mail address either
    assert "4242" not in text  # the pid only churns labels


def test_the_counters_survive_the_purge(tmp_path, monkeypatch):
    app, _, _ = traffic(tmp_path, monkeypatch)
    before = scrape(app)
    app.clock.set(at("2027-06-01T03:00"))
    report = retention.purge(app)
    assert report.mails == 3 and _rows(app, select(func.count()).select_from(Mail))[0][0] == 0
    after = scrape(app)
    for name in ("sparring_mails_total", "sparring_receipt_latency_seconds_bucket",
                 "sparring_receipt_latency_seconds_sum", "sparring_calendar_writes_total"):
        assert {k: v for k, v in after.items() if k[0] == name} == {k: v for k, v in before.items() if k[0] == name}
    # A second purge with nothing to delete folds nothing in twice.
    retention.purge(app)
    assert scrape(app) == after


def test_an_erasure_leaves_the_mails_counted(tmp_path, monkeypatch):
    app, _, _ = traffic(tmp_path, monkeypatch)
    before = sample(scrape(app), "sparring_mails_total", outcome="accepted")
    assert access.erase(app, "150303-4321").mails == 1
    assert sample(scrape(app), "sparring_mails_total", outcome="accepted") == before == 2


def test_the_counters_on_postgresql(postgres_server, tmp_path, monkeypatch):
    postgres_server.sql("CREATE DATABASE metrics")
    app, _, _ = traffic(tmp_path, monkeypatch, db_url=postgres_server.url("metrics"))
    app.clock.set(at("2027-06-01T03:00"))
    assert retention.purge(app).mails == 3
    got = scrape(app)
    assert sample(got, "sparring_mails_total", outcome="accepted") == 2
    assert sample(got, "sparring_receipt_latency_seconds_count") == 3
    assert sample(got, "sparring_agendas_late_total") == 1


def test_a_fresh_database_answers_with_zeros_and_the_daemon_has_never_run(tmp_path, monkeypatch):
    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    got = scrape(app)
    assert sample(got, "sparring_mails_total", outcome="accepted") == 0
    assert sample(got, "sparring_receipt_latency_seconds_count") == 0
    assert sample(got, "sparring_lease_held", holder="") == 0
    assert set(got.values()) == {0}
    assert metrics.health(app) == metrics.Health(False, [("daemon", False, "the daemon has never run")])


def test_free_busy_requests_and_calendar_writes_are_counted(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-28T08:00", monkeypatch)
    request = BookingRequest(kind="network", first=date(2027, 2, 1), last=date(2027, 2, 5),
                             duration=timedelta(minutes=60), required=("anne@kommune.example",))
    assert Booker(app, dispatcher.calendar).book(request).meeting is not None
    assert sample(scrape(app), "sparring_freebusy_requests_total") == 1
    written = sample(scrape(app), "sparring_calendar_writes_total")
    dispatcher.run_once()
    assert sample(scrape(app), "sparring_calendar_writes_total") == written + 1


def beat_all(app, *, but: tuple[str, ...] = ()) -> None:
    for job in JOBS:
        if job not in but:
            metrics.heartbeat(app, job)


def hold_lease(app, seconds: float = 30) -> None:
    with app.transaction() as repo:
        row = repo.db.get(Lease, "daemon") or Lease(name="daemon", holder="sparring-1:4242", expires_at=app.now())
        row.expires_at = app.now() + timedelta(seconds=seconds)
        repo.db.add(row)


def failing(app) -> list[str]:
    return [name for name, ok, _ in metrics.health(app).checks if not ok]


def test_health_is_ok_with_fresh_heartbeats_and_a_live_lease_and_fails_when_they_are_not(tmp_path, monkeypatch):
    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    hold_lease(app)
    metrics.heartbeat(app, "daemon", force=True)
    beat_all(app)
    assert metrics.health(app).ok
    assert ("lease", True, "the lease is held by sparring-1") in metrics.health(app).checks
    app.clock.advance(timedelta(minutes=10))  # the intake loop stopped; all else runs
    hold_lease(app)
    beat_all(app, but=("intake",))
    assert failing(app) == ["intake"]
    assert ("intake", False, "intake has not run for 10 min (allowed 5 min)") in metrics.health(app).checks
    metrics.heartbeat(app, "intake")
    assert metrics.health(app).ok
    app.clock.advance(timedelta(seconds=31))  # the lease was not renewed: lapsed
    assert failing(app) == ["lease"]
    assert not metrics.health(app).ok


def test_a_job_is_overdue_by_its_cadence_counted_from_the_daemons_start(tmp_path, monkeypatch):
    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    metrics.heartbeat(app, "purge")  # the last purge, before a two-day stop
    app.clock.advance(timedelta(days=2))
    metrics.heartbeat(app, "daemon", force=True)  # started again: the purge is due at 03:00, not overdue
    hold_lease(app)
    resting = ("purge", "publish", "cooperation", "cases", "coordination", "backlog")
    beat_all(app, but=resting)
    assert metrics.health(app).ok
    app.clock.advance(timedelta(hours=3))  # the hourly jobs never ran since the start
    hold_lease(app)
    beat_all(app, but=resting)
    assert failing(app) == ["cases", "coordination", "backlog"]
    app.clock.advance(timedelta(hours=24))
    hold_lease(app)
    beat_all(app, but=("purge",))
    assert failing(app) == ["purge"]


def test_a_heartbeat_is_written_at_most_once_a_minute(tmp_path, monkeypatch):
    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)

    def stored() -> datetime:
        return datetime.fromisoformat(_rows(app, select(Meta.value).where(Meta.key == "heartbeat:intake"))[0][0])

    metrics.heartbeat(app, "intake")
    app.clock.advance(timedelta(seconds=50))
    metrics.heartbeat(app, "intake")
    assert stored() == at("2027-01-04T08:00")
    app.clock.advance(timedelta(seconds=10))
    metrics.heartbeat(app, "intake")
    assert stored() == at("2027-01-04T08:01")


def test_under_now_health_compares_wall_clock_times_like_the_lease(tmp_path, monkeypatch):
    """A daemon under ``--now`` (a RunningClock) and a ``serve`` started with
    another ``--now`` agree: heartbeats are on the wall clock, as the lease is."""
    with time_machine.travel(at("2026-03-02T10:00"), tick=False) as traveller:
        app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)
        app.clock = RunningClock(at("2027-01-04T08:00"))  # the daemon's --now
        assert lease.acquire(app, "sparring-1:4242")
        metrics.heartbeat(app, "daemon", force=True)
        beat_all(app)
        serve, _ = build(tmp_path, "2027-05-01T12:00", monkeypatch)
        serve.clock = RunningClock(at("2027-05-01T12:00"))  # serve's own --now, months on
        assert metrics.health(serve).ok
        assert sample(scrape(serve), "sparring_lease_held", holder="sparring-1") == 1
        traveller.shift(timedelta(minutes=10))  # the daemon froze: no renewal, no heartbeat
        serve.clock = RunningClock(at("2027-05-01T12:00"))  # serve started again, 10 minutes on
        assert failing(serve)[:2] == ["lease", "intake"]


def beats(app) -> dict[str, datetime]:
    rows = _rows(app, select(Meta.key, Meta.value).where(Meta.key.like("heartbeat:%")))
    return {key.removeprefix("heartbeat:"): datetime.fromisoformat(value) for key, value in rows}


def test_the_jobs_and_the_sender_beat(tmp_path, monkeypatch):
    app, dispatcher = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    sender = Sender(app, dispatcher, threading.Event())
    monkeypatch.setattr(jobs, "RUNTIME", jobs.Runtime(app, dispatcher, sender=sender))
    jobs.cases()
    jobs.coordination()
    sender._round()
    assert beats(app) == {job: app.now() for job in ("cases", "coordination", "sender")}


def test_the_daemon_intake_loop_beats_when_its_source_answers(tmp_path, monkeypatch):
    from scheduler.daemon import Daemon
    from scheduler.services.intake import Intake
    from scheduler.wiring import make_source

    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    daemon = Daemon(app, poll_seconds=0.1)
    source = make_source(app.config, app.data_dir, app, cipher=app.cipher, clock=app.clock)
    daemon._intake_once(Intake(app), source)
    assert beats(app) == {"intake": app.now()}


def test_the_readme_names_only_metrics_that_exist_and_every_one_of_them(tmp_path, monkeypatch):
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Watching it (metrics and health)"):readme.index("## Running on Microsoft 365")]
    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch)
    families = list(text_string_to_metric_families(generate_latest(metrics.registry(app)).decode()))
    exposed = {f.name for f in families} | {s.name for f in families for s in f.samples}
    named = set(re.findall(r"\bsparring_[a-z_]+", section))
    assert {"sparring_outbox_failed", "sparring_mails_total"} <= named <= exposed
    assert {f.name for f in families} <= {re.sub(r"_total$", "", n) for n in named}  # each one in the table
