"""The MailTransport contract (ports.py), specified once and run against
every transport: the outbox folder, SMTP (aiosmtpd), EWS (the fake EWS
server) and Graph (the fake Graph server)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path

import pytest

from scheduler.ports import MailTransport, OutgoingMail, TransientError

SENDER = "sparring@kommune.example"


@dataclass
class Outbox:
    """One transport as the contract sees it."""

    transport: MailTransport
    delivered: Callable[[], list[tuple[bytes, set[str]]]]  # (bytes, who gets them), in order
    busy: Callable[[], None] | None  # the server asks us to come back later; None: cannot be
    reaches_hidden: bool = True  # delivers to envelope recipients the headers do not name


def _named(raw: bytes) -> set[str]:
    headers = BytesHeaderParser().parsebytes(raw)
    return {a.lower() for _, a in getaddresses(headers.get_all("To", []) + headers.get_all("Cc", []))}


def _folder(tmp_path: Path, request) -> Outbox:
    from scheduler.clock import FixedClock
    from scheduler.mail.folder import FolderTransport
    from tests.appkit import at

    outbox = tmp_path / "outbox"

    def delivered():
        files = sorted(outbox.glob("*.eml"), key=lambda p: int(p.name.split(".", 1)[0].rsplit("-", 1)[1]))
        return [(p.read_bytes(), _named(p.read_bytes())) for p in files]

    return Outbox(FolderTransport(outbox, FixedClock(at("2027-01-04T08:00"))), delivered, None,
                  reaches_hidden=False)


def _smtp(tmp_path: Path, request) -> Outbox:
    from scheduler.mail.smtp import SmtpTransport
    from scheduler.tls import client_context

    server = request.getfixturevalue("smtp")
    transport = SmtpTransport(server.host, server.port, "starttls", username=server.user, password=server.password,
                              ssl_context=client_context(server.ca_file), timeout=10, local_hostname="localhost")
    return Outbox(transport, lambda: [(m.data, set(m.recipients)) for m in server.messages],
                  lambda: server.refuse("travl@kommune.example", "451 4.3.0 Try again later"))


def _ews(tmp_path: Path, request) -> Outbox:
    from exchangelib.protocol import Protocol

    from scheduler.exchange.account import build_account
    from scheduler.exchange.mailbox import ExchangeTransport
    from tests.servers.ews import NS
    from tests.test_exchange_calendar import exchange_config

    server, fake = request.getfixturevalue("ews_server"), request.getfixturevalue("ews")
    Protocol.clear_cache()
    account = build_account(exchange_config(server.url), fake.password, max_wait=2)

    def delivered():
        out = []
        for item in fake.in_folder("sentitems"):
            raw = base64.b64decode(item.mime)
            bcc = {e.text.lower() for e in item.element.iterfind("t:BccRecipients/t:Mailbox/t:EmailAddress", NS)}
            out.append((raw, _named(raw) | bcc))
        return out

    return Outbox(ExchangeTransport(account), delivered, lambda: fake.fail_next("CreateItem", backoff_ms=60_000))


def _graph(tmp_path: Path, request) -> Outbox:
    from scheduler.graph.mailbox import GraphTransport
    from tests.test_graph_mailbox import graph_client

    server, fake = request.getfixturevalue("graph_server"), request.getfixturevalue("graph")
    return Outbox(GraphTransport(graph_client(server), SENDER),
                  lambda: [(m.mime, _named(m.mime) | set(m.bcc)) for m in fake.mailbox().sent],
                  lambda: fake.fail_next("POST", "/sendMail$", 429, retry_after=600))


BACKENDS = {"folder": _folder, "smtp": _smtp, "ews": _ews, "graph": _graph}


@pytest.fixture(params=sorted(BACKENDS))
def outbox(request, tmp_path):
    made = BACKENDS[request.param](tmp_path, request)
    yield made
    made.transport.close()


def message(to: str, subject: str = "Kvittering", body: str = "Dit punkt er modtaget: æøå.") -> bytes:
    return (f"From: Sparringsforum <{SENDER}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.lower()}@kommune.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            f"{body}\r\n").encode()


def test_a_message_leaves_byte_for_byte_to_its_recipient(outbox):
    assert isinstance(outbox.transport, MailTransport)
    raw = message("karen@kommune.example")
    outbox.transport.send(OutgoingMail(SENDER, ("karen@kommune.example",), raw, kind="receipt"))
    assert outbox.delivered() == [(raw, {"karen@kommune.example"})]


def test_each_send_is_one_message_in_order(outbox):
    first, second = message("a@kommune.example", "Kvittering"), message("b@kommune.example", "Dagsorden")
    outbox.transport.send(OutgoingMail(SENDER, ("a@kommune.example",), first))
    outbox.transport.send(OutgoingMail(SENDER, ("b@kommune.example",), second, kind="agenda"))
    assert [raw for raw, _ in outbox.delivered()] == [first, second]


def test_envelope_recipients_the_headers_do_not_name_are_reached(outbox):
    if not outbox.reaches_hidden:
        pytest.skip("the outbox folder delivers to nobody: an operator reads the files")
    raw = message("koordinator@kommune.example", "Dagsorden")
    outbox.transport.send(OutgoingMail(SENDER, ("koordinator@kommune.example", "sagsbehandler@kommune.example"),
                                       raw, kind="agenda"))
    [(got, recipients)] = outbox.delivered()
    assert got == raw and recipients == {"koordinator@kommune.example", "sagsbehandler@kommune.example"}


def test_a_busy_server_is_a_transient_error_and_nothing_is_sent(outbox):
    if outbox.busy is None:
        pytest.skip("a folder is never busy")
    outbox.busy()
    with pytest.raises(TransientError):
        outbox.transport.send(OutgoingMail(SENDER, ("travl@kommune.example",), message("travl@kommune.example")))
    assert outbox.delivered() == []
