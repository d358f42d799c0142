"""The daemon under failing servers (issue 14, item 2), in-process, through
the fault injector: a stalled mail server holds up neither intake nor (for
ever) the watchdog; once it is back, what waited leaves at its own back-off
time; a fault during intake leaves the mail in the inbox to be taken again,
never answered twice.

The daemon runs on a clock that starts at a fixed moment and moves with the
monotonic clock (back-off times must pass); waits are ``wait_for`` polls with
generous bounds, never assertions on durations.
"""

from __future__ import annotations

import logging
import socket
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from scheduler.clock import RunningClock
from scheduler.config import load_config
from scheduler.daemon import Daemon
from scheduler.mail.imap import ImapSource
from scheduler.ports import TransientError
from scheduler.services.intake import Intake
from scheduler.store.keys import new_key
from scheduler.store.tables import Mail, OutboxEntry
from scheduler.wiring import make_app
from tests.appkit import CONFIG, FOLDERS, at, item_mail
from tests.daemonkit import drop_mail, eml_files, wait_for
from tests.servers.faults import imap_bye

pytestmark = pytest.mark.servers

ADMIN = "it-drift@kommune.example"


def _smtp_config(proxy, smtp, timeout: int):
    config = load_config(CONFIG)
    outbox = config.outbox.model_copy(update={
        "transport": "smtp", "backoff_seconds": 0.5, "backoff_max_seconds": 2.0, "max_attempts": 50,
        "smtp": config.outbox.smtp.model_copy(update={
            "host": proxy.host, "port": proxy.port, "security": "starttls", "username": smtp.user,
            "ca_file": smtp.ca_file, "timeout_seconds": timeout})})
    return config.model_copy(update={"outbox": outbox})


def _notify_socket(path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0)
    return sock


def _drain(sock: socket.socket) -> str:
    got = []
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except BlockingIOError:
            return "\n".join(got)


def _decided(app) -> int:
    with app.transaction() as repo:
        return len(repo.db.scalars(select(Mail)).all())


def test_a_stalled_mail_server_holds_up_neither_intake_nor_the_retries_after_it_returns(
        tmp_path, monkeypatch, faults, smtp, caplog):
    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    monkeypatch.setenv("SPARRING_SMTP_PASSWORD", smtp.password)
    notify = _notify_socket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    faults.smtp.toxic("timeout", timeout=0)  # accepts, then never answers: only a socket timeout ends it
    app = make_app(_smtp_config(faults.smtp, smtp, timeout=300), RunningClock(at("2027-01-04T08:00")), tmp_path)
    daemon = Daemon(app, poll_seconds=0.2)
    daemon.stall_after = 1.0
    runner = threading.Thread(target=daemon.run, daemon=True)
    caplog.set_level(logging.INFO)
    runner.start()
    try:
        inbox = tmp_path / "inbox"
        drop_mail(inbox, "m1", item_mail("150303-4321", "m1"), app.now())
        wait_for(lambda: _decided(app) == 1, 60, "the first mail decided")
        wait_for(lambda: "no longer fed" in caplog.text, 60, "the stalled sender noticed")
        _drain(notify)
        drop_mail(inbox, "m2", item_mail("160404-4322", "m2"), app.now())
        wait_for(lambda: _decided(app) == 2 and not eml_files(inbox), 60,
                 "the second mail decided while the mail server stalls")
        assert smtp.messages == []  # the receipts wait
        assert "WATCHDOG=1" not in _drain(notify), "not fed while the sender is stuck"

        faults.smtp.down()  # the server restarts: the stalled connection is cut ...
        faults.smtp.heal()  # ... and it answers again
        receipts = lambda: [m for m in smtp.messages if b"\nIn-Reply-To: <m" in m.data]  # noqa: E731
        # The back-off cap is 2 s; a periodic job would come only after 30.
        wait_for(lambda: len(receipts()) == 2, 20, "both receipts, at their own back-off time")
        wait_for(lambda: "WATCHDOG=1" in _drain(notify), 20, "the watchdog fed again")
        wait_for(lambda: [m for m in smtp.messages if m.recipients == (ADMIN,)], 20, "the outage reported")
        wait_for(lambda: _statuses(app) == {"done"}, 15, "everything queued sent (cap 2 s, not the 30 s idle)")
    finally:
        daemon.stopping.set()
        runner.join(60)
    assert not runner.is_alive()
    assert len([m for m in smtp.messages if m.recipients == (ADMIN,)]) == 1


def _statuses(app) -> set[str]:
    with app.transaction() as repo:
        return set(repo.db.scalars(select(OutboxEntry.status)))


def _imap_app(tmp_path, monkeypatch, proxy, dovecot):
    monkeypatch.setenv("SPARRING_SECRET_KEY", new_key())
    app = make_app(load_config(CONFIG), RunningClock(at("2027-01-04T08:00")), tmp_path)
    source = ImapSource(proxy.host, proxy.port, "none", dovecot.user, dovecot.password,
                        folders=FOLDERS, timeout=5)
    return app, source


def test_a_fault_during_intake_leaves_the_mail_to_be_taken_again_never_answered_twice(
        tmp_path, monkeypatch, faults, imap_mailbox):
    for n in (1, 2):
        imap_mailbox.append(item_mail(f"15030{n}-432{n}", f"i{n}"), datetime(2027, 1, 4, 6, n, tzinfo=UTC))
    app, source = _imap_app(tmp_path, monkeypatch, faults.imap, imap_mailbox)
    intake = Intake(app)
    # A cut in the middle of the FETCH answer: nothing decided, all still in the inbox.
    source.fetch(1)  # logged in
    faults.imap.toxic("reset_peer", after_bytes=600)
    with pytest.raises(TransientError):
        intake.run(source)
    assert _decided(app) == 0 and imap_mailbox.folders().get("INBOX") == 2
    faults.imap.heal()
    # Decided, then the connection dies at the MOVE: the mails stay in the inbox.
    faults.imap.answer(rb"^\S+ UID MOVE ", imap_bye(), close=True)
    try:
        intake.run(source)
        source.close()
    except TransientError:
        pass
    assert _decided(app) == 2 and imap_mailbox.folders().get("INBOX") == 2
    faults.imap.heal()
    # Taken again: settled in the folder of their decision, and answered once.
    intake.run(source)
    source.close()
    folders = imap_mailbox.folders()
    assert folders.get("INBOX", 0) == 0 and folders.get("Behandlet") == 2
    with app.transaction() as repo:
        receipts = repo.db.scalars(select(OutboxEntry).where(OutboxEntry.kind == "receipt")).all()
    assert len(receipts) == 2
    intake.close()


def test_idle_on_a_stalled_server_ends_at_the_socket_timeout(tmp_path, monkeypatch, faults, imap_mailbox):
    """No thread waits for ever: IDLE's reads time out like every other."""
    app, source = _imap_app(tmp_path, monkeypatch, faults.imap, imap_mailbox)
    source.timeout = 1
    source.fetch(10)  # logged in, IDLE offered
    faults.imap.toxic("timeout", timeout=0)  # the server goes silent
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(source.wait(2)), daemon=True)
    waiter.start()
    waiter.join(60)
    assert not waiter.is_alive() and result == [False]
    faults.imap.heal()
    imap_mailbox.append(item_mail("150303-4321", "i9"), datetime(2027, 1, 4, 6, 0, tzinfo=UTC))
    assert len(source.fetch(10)) == 1  # a new connection
    source.close()
