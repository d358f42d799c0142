"""The outbox under a failing mail server (issue 14, item 2), through the
fault injector in front of a real aiosmtpd: partial acceptance, outages
reported once per episode, everything sent once the server is back."""

from __future__ import annotations

import json
from datetime import UTC, timedelta

import pytest
from sqlalchemy import select

from scheduler.config import load_config
from scheduler.mail.compose import text_mail
from scheduler.mail.smtp import SmtpTransport
from scheduler.services.dispatch import Dispatcher, retry_failed
from scheduler.services.status import outbox_rows, status_lines
from scheduler.store.tables import OutboxEntry
from scheduler.tls import client_context
from tests.appkit import CONFIG, build

pytestmark = pytest.mark.servers

ADMIN = "it-drift@kommune.example"


def _config(max_attempts: int = 4, patience_hours: float = 24.0):
    config = load_config(CONFIG)
    outbox = config.outbox.model_copy(update={"max_attempts": max_attempts, "backoff_seconds": 2.0,
                                              "backoff_max_seconds": 8.0,
                                              "outage_patience_hours": patience_hours})
    return config.model_copy(update={"outbox": outbox})


def _dispatcher(tmp_path, monkeypatch, faults, smtp, **config):
    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch, config=_config(**config))
    proxy = faults.smtp
    transport = SmtpTransport(proxy.host, proxy.port, "starttls", smtp.user, smtp.password,
                              client_context(smtp.ca_file), timeout=5, local_hostname="localhost")
    return app, Dispatcher(app, transport, None)


def _queue(app, key: str, *to: str) -> None:
    message = text_mail(sender=app.forum_address, sender_name=app.forum_name, to=list(to),
                        subject=f"Besked {key}", body="Hej.\n", sent_at=app.now(), language="da")
    with app.transaction() as repo:
        repo.enqueue_mail(message, kind="alert", dedupe_key=key, recipients=list(to))


def _admin_mails(smtp) -> list:
    return [m for m in smtp.messages if m.recipients == (ADMIN,)]


def _statuses(app) -> list[tuple[str, list[str]]]:
    with app.transaction() as repo:
        rows = repo.db.execute(select(OutboxEntry.status, OutboxEntry.recipients, OutboxEntry.kind)
                               .order_by(OutboxEntry.id)).all()
    return [(status, json.loads(to)) for status, to, kind in rows if kind != "report"]


def test_partial_acceptance_retries_only_the_4xx_and_fails_only_the_5xx(tmp_path, monkeypatch, faults, smtp):
    app, dispatcher = _dispatcher(tmp_path, monkeypatch, faults, smtp)
    a, busy, unknown = "a@kommune.example", "fuld@kommune.example", "ukendt@kommune.example"
    smtp.refuse(busy, "452 4.2.2 Mailbox full", times=1)
    smtp.refuse(unknown, "550 5.1.1 No such user")
    _queue(app, "k1", a, busy, unknown)
    dispatcher.run_once()
    assert [m.recipients for m in smtp.messages] == [(a,)]
    assert _statuses(app) == [("pending", [busy]), ("failed", [unknown])]
    [failed] = outbox_rows(app, failed_only=True)
    assert "to=1" in failed and "550" in failed
    app.clock.advance(timedelta(seconds=9))  # past the back-off cap
    dispatcher.run_once()
    assert [m.recipients for m in smtp.messages if m.recipients != (ADMIN,)] == [(a,), (busy,)]
    assert len(_admin_mails(smtp)) == 1  # the 550 reported, once
    assert _statuses(app) == [("done", [busy]), ("failed", [unknown])]
    smtp.reset()  # the address is mended: the failed copy goes to the refused recipient alone
    assert retry_failed(app) == 1
    dispatcher.run_once()
    assert [m.recipients for m in smtp.messages] == [(unknown,)]


def test_an_outage_is_one_admin_mail_and_everything_leaves_when_the_server_returns(
        tmp_path, monkeypatch, faults, smtp):
    app, dispatcher = _dispatcher(tmp_path, monkeypatch, faults, smtp, max_attempts=3)
    faults.smtp.down()
    for n in range(4):
        _queue(app, f"k{n}", f"person{n}@kommune.example")
    for round_ in range(4):  # retries across the back-off, past max_attempts: the server is down, they wait
        dispatcher.run_once()
        app.clock.advance(timedelta(seconds=9))
        if round_ == 1:
            _queue(app, "late", "late@kommune.example")
    assert smtp.messages == []
    assert any(line.startswith("outage: mail server failing since 2027-01-04 08:00;")
               for line in status_lines(app))
    statuses = [s for s, _ in _statuses(app)]
    assert statuses == ["pending"] * 5, "within the outage patience nothing fails"
    faults.smtp.up()
    dispatcher.run_once()
    assert len(_admin_mails(smtp)) == 1, "one mail for the whole outage"
    assert len(smtp.messages) == 6 and retry_failed(app) == 0  # nothing lost, nothing to retry by hand
    assert not any(line.startswith("outage:") for line in status_lines(app))
    # A second outage is a second episode: one more mail.
    faults.smtp.down()
    _queue(app, "again", "again@kommune.example")
    dispatcher.run_once()
    faults.smtp.up()
    app.clock.advance(timedelta(seconds=9))
    dispatcher.run_once()
    assert len(_admin_mails(smtp)) == 2


def test_a_connection_cut_mid_data_is_retried_and_sent_once(tmp_path, monkeypatch, faults, smtp):
    app, dispatcher = _dispatcher(tmp_path, monkeypatch, faults, smtp)
    dispatcher.run_once()  # nothing queued; the transport is not even opened
    _queue(app, "k1", "a@kommune.example")
    faults.smtp.toxic("reset_peer", stream="upstream", after_bytes=900)  # past EHLO/STARTTLS, inside DATA
    dispatcher.run_once()
    assert smtp.messages == [] and _statuses(app) == [("pending", ["a@kommune.example"])]
    faults.smtp.heal()
    app.clock.advance(timedelta(seconds=9))
    dispatcher.run_once()
    assert [m.recipients for m in smtp.messages if m.recipients != (ADMIN,)] == [("a@kommune.example",)]
    assert len(_admin_mails(smtp)) == 1


# -- the other servers: their own back-off honoured, one report per outage ---


def _waits(app) -> float:
    """Seconds until the queued mail's next attempt."""
    with app.transaction() as repo:
        due = repo.db.scalar(select(OutboxEntry.next_attempt_at).where(OutboxEntry.kind == "alert"))
    due = due if due.tzinfo else due.replace(tzinfo=UTC)  # SQLite hands back naive UTC
    return (due - app.now()).total_seconds()


def _reports(app) -> int:
    with app.transaction() as repo:
        return len(repo.db.scalars(select(OutboxEntry).where(OutboxEntry.kind == "report")).all())


def test_graph_429_waits_its_retry_after_and_an_expired_token_is_renewed(
        tmp_path, monkeypatch, graph_server, graph):
    from scheduler.graph.mailbox import GraphTransport
    from tests.servers.graph import MAILBOX
    from tests.test_graph_mailbox import graph_client

    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch, config=_config())
    slept: list[float] = []
    dispatcher = Dispatcher(app, GraphTransport(graph_client(graph_server, sleep=slept.append), MAILBOX), None)
    graph.fail_next("POST", "/sendMail$", 429, retry_after=600, times=3)
    _queue(app, "k1", "a@kommune.example")
    dispatcher.run_once()
    assert slept == [] and not graph.mailbox().sent  # 600 s is not slept inside the sender's round
    assert _waits(app) >= 599  # Graph's Retry-After, above our own back-off cap (8 s)
    app.clock.advance(timedelta(seconds=601))
    graph.expire_tokens()
    dispatcher.run_once()  # 401: the token renewed, then 429 again
    app.clock.advance(timedelta(seconds=601))
    dispatcher.run_once()
    app.clock.advance(timedelta(seconds=601))
    dispatcher.run_once()
    assert len(graph.mailbox().sent) == 2  # the mail and the one report
    assert _reports(app) == 1


def test_ews_server_busy_waits_its_back_off(tmp_path, monkeypatch, ews_server, ews):
    from exchangelib.protocol import Protocol

    from scheduler.exchange.account import build_account
    from scheduler.exchange.mailbox import ExchangeTransport
    from tests.test_exchange_calendar import exchange_config

    Protocol.clear_cache()
    account = build_account(exchange_config(ews_server.url), "hemmeligt", max_wait=2)
    app, _ = build(tmp_path, "2027-01-04T08:00", monkeypatch, config=_config())
    dispatcher = Dispatcher(app, ExchangeTransport(account), None)
    ews.fail_next("CreateItem", backoff_ms=120_000)
    _queue(app, "k1", "a@kommune.example")
    dispatcher.run_once()
    assert not ews.in_folder("sentitems")
    assert _waits(app) >= 119  # the server's BackOffMilliseconds, above our own back-off cap (8 s)
    app.clock.advance(timedelta(seconds=121))
    dispatcher.run_once()
    assert len(ews.in_folder("sentitems")) == 2  # the mail and the one report


def test_caldav_503_412_and_a_cut_are_retried_and_reported_once(tmp_path, monkeypatch, faults, radicale_server):
    from scheduler.services.publishing import publish_horizon
    from tests.servers.faults import http_reply
    from tests.test_caldav import make_backend

    app, folder = build(tmp_path, "2027-01-04T08:00", monkeypatch, config=_config(max_attempts=10))
    backend = make_backend(faults.caldav.url)
    dispatcher = Dispatcher(app, folder.transport, backend)
    faults.caldav.answer(r"^PUT ", http_reply(503, "Service Unavailable"), close=True, times=2)
    faults.caldav.answer(r"^PUT ", http_reply(412, "Precondition Failed"), close=True, times=1)
    faults.caldav.answer(r"^PUT ", http_reply(507, "Insufficient Storage"), close=True, times=1)
    publish_horizon(app)
    for _ in range(8):
        dispatcher.run_once()
        app.clock.advance(timedelta(seconds=9))
    with app.transaction() as repo:
        statuses = set(repo.db.scalars(select(OutboxEntry.status).where(OutboxEntry.kind == "calendar")))
    assert statuses == {"done"} and faults.caldav.stats.answered == 4
    assert _reports(app) == 1
    backend.close()


def test_an_outage_longer_than_the_patience_fails_entries_for_the_admin_to_retry(
        tmp_path, monkeypatch, faults, smtp):
    app, dispatcher = _dispatcher(tmp_path, monkeypatch, faults, smtp, max_attempts=3, patience_hours=0.005)
    faults.smtp.down()
    for n in range(4):
        _queue(app, f"k{n}", f"person{n}@kommune.example")
    for _ in range(4):  # 36 s of outage: past the patience (18 s) and the attempts
        dispatcher.run_once()
        app.clock.advance(timedelta(seconds=9))
    assert [s for s, _ in _statuses(app)] == ["failed"] * 4
    faults.smtp.up()
    dispatcher.run_once()
    assert retry_failed(app) == 4
    dispatcher.run_once()
    assert len(smtp.messages) == 5  # the four and the one admin mail
