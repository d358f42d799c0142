"""The MailSource contract (ports.py), specified once and run against every
source: the folder, IMAP (Dovecot), EWS (the fake EWS server) and Graph
(the fake Graph server). A new source passes here before it is wired."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest

from scheduler.ports import Disposition, MailSource
from tests.appkit import FOLDERS

# Dovecot refuses APPEND dates in the future: arrivals lie in January 2025.
T0 = datetime(2025, 1, 6, 7, 0, tzinfo=timezone.utc)


def mail(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"sagsbehandler{n}@kommune.example"
    msg["To"] = "sparring@kommune.example"
    msg["Subject"] = f"Punkt {n}"
    msg["Message-ID"] = f"<kontrakt-{n}@kommune.example>"
    msg.set_content(f"Punkt nummer {n}: æøå.\n")
    return msg.as_bytes().replace(b"\n", b"\r\n")


@dataclass
class Mailbox:
    """One backend as the contract sees it."""

    deliver: Callable[[bytes, datetime], None]
    open: Callable[[], MailSource]  # a new source: a restart of the process
    settled: Callable[[str], int]  # mails in the folder of that name
    opened: list = field(default_factory=list)

    def source(self) -> MailSource:
        made = self.open()
        self.opened.append(made)
        return made


def _folder(tmp_path: Path, request) -> Mailbox:
    from scheduler.mail.folder import FolderSource

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = {name: d.value for d, name in FOLDERS.items()}
    counter = iter(range(10_000))

    def deliver(raw: bytes, received: datetime) -> None:
        path = inbox / f"{next(counter):04d}.eml"
        path.write_bytes(raw)
        os.utime(path, (received.timestamp(), received.timestamp()))

    return Mailbox(deliver, lambda: FolderSource(inbox),
                   lambda name: len(list((tmp_path / names[name]).glob("*.eml"))))


def _imap(tmp_path: Path, request) -> Mailbox:
    from scheduler.mail.imap import ImapSource
    from scheduler.tls import client_context

    server = request.getfixturevalue("imap_mailbox")
    return Mailbox(server.append, lambda: ImapSource(
        host=server.host, port=server.imap_port, security="starttls", username=server.user,
        password=server.password, folders=FOLDERS, ssl_context=client_context(server.ca_file), idle=False,
        batch_size=2), lambda name: server.folders().get(name, 0))


def _ews(tmp_path: Path, request) -> Mailbox:
    from exchangelib.protocol import Protocol

    from scheduler.exchange.account import build_account
    from scheduler.exchange.mailbox import ExchangeSource
    from tests.test_exchange_calendar import exchange_config

    server, fake = request.getfixturevalue("ews_server"), request.getfixturevalue("ews")
    Protocol.clear_cache()
    account = build_account(exchange_config(server.url), fake.password, max_wait=2)
    return Mailbox(fake.deliver, lambda: ExchangeSource(account, FOLDERS, batch_size=2),
                   lambda name: len(fake.in_folder(name)))


def _graph(tmp_path: Path, request) -> Mailbox:
    from scheduler.graph.mailbox import GraphSource
    from tests.test_graph_mailbox import graph_client, state

    server, fake = request.getfixturevalue("graph_server"), request.getfixturevalue("graph")
    store = state(tmp_path, request.getfixturevalue("monkeypatch"))
    return Mailbox(fake.deliver, lambda: GraphSource(graph_client(server), "sparring@kommune.example", FOLDERS,
                                                     store, batch_size=2),
                   lambda name: len(fake.in_folder(name)))


BACKENDS = {"folder": _folder, "imap": _imap, "ews": _ews, "graph": _graph}


@pytest.fixture(params=sorted(BACKENDS))
def mailbox(request, tmp_path):
    made = BACKENDS[request.param](tmp_path, request)
    yield made
    for source in made.opened:
        source.close()


def deliver(mailbox: Mailbox, count: int) -> None:
    """Mails an hour apart, delivered as they arrive."""
    for n in range(count):
        mailbox.deliver(mail(n), T0 + timedelta(hours=n))


def test_fetch_is_oldest_arrival_first_with_the_bytes_and_the_arrival(mailbox):
    deliver(mailbox, 5)
    source = mailbox.source()
    assert isinstance(source, MailSource)
    got = source.fetch(limit=10)
    assert [m.raw for m in got] == [mail(n) for n in range(5)]
    assert [m.received_at for m in got] == [T0 + timedelta(hours=n) for n in range(5)]


def test_fetch_respects_the_limit_and_changes_nothing(mailbox):
    deliver(mailbox, 5)
    source = mailbox.source()
    first = source.fetch(limit=3)
    assert [m.raw for m in first] == [mail(n) for n in range(3)]
    assert [m.raw for m in source.fetch(limit=3)] == [mail(n) for n in range(3)]


def test_settled_mails_go_to_their_folders_and_are_not_fetched_again(mailbox):
    deliver(mailbox, 4)
    source = mailbox.source()
    refs = [m.ref for m in source.fetch(limit=10)]
    source.settle({Disposition.PROCESSED: refs[:2], Disposition.REJECTED: refs[2:3],
                   Disposition.QUARANTINE: refs[3:], Disposition.IGNORED: []})
    assert source.fetch(limit=10) == []
    assert [mailbox.settled(n) for n in ("Behandlet", "Afvist", "Karantæne", "Ignoreret")] == [2, 1, 1, 0]
    source.settle({Disposition.PROCESSED: refs[:1]})  # already moved: ignored
    assert mailbox.settled("Behandlet") == 2


def test_a_restart_hands_out_again_what_was_not_settled_and_nothing_that_was(mailbox):
    deliver(mailbox, 5)
    before = mailbox.source()
    fetched = before.fetch(limit=3)
    before.settle({Disposition.PROCESSED: [m.ref for m in fetched[:2]]})
    before.close()
    after = mailbox.source()  # the third was fetched, never settled: a crash before its commit
    assert [m.raw for m in after.fetch(limit=10)] == [mail(n) for n in (2, 3, 4)]


def test_mail_arriving_later_is_fetched_after_the_rest(mailbox):
    deliver(mailbox, 2)
    source = mailbox.source()
    source.settle({Disposition.PROCESSED: [m.ref for m in source.fetch(limit=10)]})
    mailbox.deliver(mail(7), T0 + timedelta(hours=7))
    assert [m.raw for m in source.fetch(limit=10)] == [mail(7)]


def test_wait_returns_within_its_timeout(mailbox):
    assert mailbox.source().wait(0.01) in (True, False)
