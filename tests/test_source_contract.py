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

from scheduler.ports import Disposition, MailSource, TransientError
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
    busy: Callable[[], None] | None = None  # the mailbox's next deletion fails: throttled
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
                   lambda name: len(fake.in_folder(name)),
                   busy=lambda: fake.fail_next("DeleteItem", backoff_ms=60_000))  # longer than max_wait


def _graph(tmp_path: Path, request) -> Mailbox:
    from scheduler.graph.mailbox import GraphSource
    from tests.test_graph_mailbox import graph_client, state

    server, fake = request.getfixturevalue("graph_server"), request.getfixturevalue("graph")
    store = state(tmp_path, request.getfixturevalue("monkeypatch"))
    return Mailbox(fake.deliver, lambda: GraphSource(graph_client(server), "sparring@kommune.example", FOLDERS,
                                                     store, batch_size=2),
                   lambda name: len(fake.in_folder(name)),
                   busy=lambda: fake.fail_next("POST", "/permanentDelete$", 429, retry_after=600))


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


# -- the mailbox's settled folders: retention and a citizen's erasure (not the folder source's) --


def _settled_source(mailbox: Mailbox) -> MailSource:
    from scheduler.mail.folder import FolderSource

    source = mailbox.source()
    if isinstance(source, FolderSource):
        pytest.skip("the folder source's settled mails are the data directory's: erased and purged there")
    return source


def _settle_four_keep_one(mailbox: Mailbox, source: MailSource) -> None:
    """Mails 0-4 a day apart: 0, 1 processed, 2 rejected, 3 ignored, 4 still in the inbox."""
    for n in range(5):
        mailbox.deliver(mail(n), T0 + timedelta(days=n))
    refs = [m.ref for m in source.fetch(limit=10)]
    source.settle({Disposition.PROCESSED: refs[:2], Disposition.REJECTED: refs[2:3],
                   Disposition.IGNORED: refs[3:4]})
    source.fetch(limit=10)  # IMAP pipelines its moves behind the next command


def _left(mailbox: Mailbox) -> list[int]:
    return [mailbox.settled(n) for n in ("Behandlet", "Afvist", "Karantæne", "Ignoreret")]


def test_erase_deletes_the_named_mails_in_the_settled_folders_and_the_inbox(mailbox):
    source = _settled_source(mailbox)
    _settle_four_keep_one(mailbox, source)
    named = ["<kontrakt-0@kommune.example>", "<kontrakt-2@kommune.example>", "kontrakt-3@kommune.example",
             "<kontrakt-4@kommune.example>", "<ukendt@kommune.example>"]
    assert source.erase_settled(named) == 4
    assert _left(mailbox) == [1, 0, 0, 0], "mail 1 (another citizen's) stays"
    assert source.fetch(limit=10) == []
    assert source.erase_settled(named) == 0  # run again: nothing left, no error


def test_purge_deletes_settled_mail_older_than_the_cutoff_and_leaves_the_inbox(mailbox):
    source = _settled_source(mailbox)
    _settle_four_keep_one(mailbox, source)
    # Midnight UTC: IMAP's SEARCH BEFORE counts whole days; the others compare instants.
    assert source.purge_settled(T0.replace(hour=0) + timedelta(days=2)) == 2
    assert _left(mailbox) == [0, 1, 0, 1]
    assert [m.raw for m in source.fetch(limit=10)] == [mail(4)], "the unsettled mail stays"


def test_a_throttled_erase_says_so_and_a_second_run_finishes_it(mailbox):
    source = _settled_source(mailbox)
    if mailbox.busy is None:
        pytest.skip("no way to throttle this server")
    _settle_four_keep_one(mailbox, source)
    named = ["<kontrakt-0@kommune.example>", "<kontrakt-2@kommune.example>"]
    mailbox.busy()
    with pytest.raises(TransientError, match=r"mailbox erase failed: .*(RateLimitError|429).*try again later"):
        source.erase_settled(named)
    source.erase_settled(named)  # what the failed run left (all, or what its batch had not reached)
    assert _left(mailbox) == [1, 0, 0, 1]
    assert source.erase_settled(named) == 0
