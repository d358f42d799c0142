"""SmtpTransport against aiosmtpd on 127.0.0.1 (STARTTLS + AUTH, and SMTPS)."""

from __future__ import annotations

import socket

import pytest

from scheduler.errors import ConfigError
from scheduler.mail.smtp import SmtpTransport
from scheduler.ports import MailTransport, OutgoingMail, PartialDelivery, PermanentError, TransientError
from scheduler.tls import client_context
from tests.servers.smtp import SmtpServer

SENDER = "sparring@kommune.example"


def outgoing(*recipients: str, subject: str = "Kvittering") -> OutgoingMail:
    message = (f"From: {SENDER}\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n"
               "Message-ID: <r1@kommune.example>\r\n\r\nDit punkt er modtaget.\r\n").encode()
    return OutgoingMail(SENDER, tuple(recipients), message, kind="receipt")


_open: list[SmtpTransport] = []


@pytest.fixture(autouse=True)
def _close_transports():
    yield
    while _open:
        _open.pop().close()


def transport(server: SmtpServer, security: str = "starttls", **options) -> SmtpTransport:
    port = server.smtps_port if security == "tls" else server.port
    options.setdefault("ssl_context", client_context(server.ca_file))
    options.setdefault("username", server.user)
    options.setdefault("password", server.password)
    made = SmtpTransport(server.host, port, security, timeout=10, local_hostname="localhost", **options)
    _open.append(made)
    return made


def test_starttls_auth_delivery_over_one_kept_connection(smtp):
    sender = transport(smtp)
    assert isinstance(sender, MailTransport)
    sender.send(outgoing("a@kommune.example", "b@kommune.example"))
    first = sender._conn
    sender.send(outgoing("c@kommune.example", subject="Dagsorden"))
    assert sender._conn is first  # no new connection per mail
    sender.close()
    assert [(m.sender, m.recipients, m.authenticated_as) for m in smtp.messages] == [
        (SENDER, ("a@kommune.example", "b@kommune.example"), "sparring"),
        (SENDER, ("c@kommune.example",), "sparring"),
    ]
    assert b"Subject: Dagsorden" in smtp.messages[1].data


def test_smtps_delivery(smtp):
    sender = transport(smtp, "tls")
    sender.send(outgoing("a@kommune.example"))
    sender.close()
    assert [m.recipients for m in smtp.messages] == [("a@kommune.example",)]


def test_reconnects_when_the_kept_connection_was_dropped(smtp):
    sender = transport(smtp)
    sender.send(outgoing("a@kommune.example"))
    sender._conn.sock.shutdown(socket.SHUT_RDWR)  # the server timed the idle session out
    sender.send(outgoing("b@kommune.example"))
    sender.close()
    assert [m.recipients for m in smtp.messages] == [("a@kommune.example",), ("b@kommune.example",)]


def test_certificate_is_verified(smtp):
    sender = transport(smtp, ssl_context=client_context())  # system CAs: ours is unknown
    with pytest.raises(PermanentError, match="certificate"):
        sender.send(outgoing("a@kommune.example"))
    assert smtp.messages == []


def test_451_is_transient(smtp):
    smtp.refuse("travl@kommune.example", "451 4.3.0 Try again later")
    sender = transport(smtp)
    with pytest.raises(TransientError, match="451"):
        sender.send(outgoing("travl@kommune.example"))
    sender.send(outgoing("a@kommune.example"))  # the connection is still good
    assert [m.recipients for m in smtp.messages] == [("a@kommune.example",)]


def test_550_is_permanent(smtp):
    smtp.refuse("ukendt@kommune.example", "550 5.1.1 No such user")
    with pytest.raises(PermanentError, match="550"):
        transport(smtp).send(outgoing("ukendt@kommune.example"))
    assert smtp.messages == []


def test_partial_refusal_names_each_refused_recipient_and_its_code(smtp):
    smtp.refuse("ukendt@kommune.example", "550 5.1.1 No such user")
    smtp.refuse("fuld@kommune.example", "452 4.2.2 Mailbox full")
    with pytest.raises(PartialDelivery, match="2 of 4 recipients") as partial:
        transport(smtp).send(outgoing("a@kommune.example", "ukendt@kommune.example", "fuld@kommune.example",
                                      "b@kommune.example"))
    assert partial.value.permanent == ("ukendt@kommune.example",)
    assert partial.value.temporary == ("fuld@kommune.example",)
    assert partial.value.delivered == ("a@kommune.example", "b@kommune.example")
    assert [m.recipients for m in smtp.messages] == [("a@kommune.example", "b@kommune.example")]


def test_all_refused_with_4xx_and_5xx_is_partial_and_421_is_transient(smtp):
    smtp.refuse("ukendt@kommune.example", "550 5.1.1 No such user")
    smtp.refuse("travl@kommune.example", "451 4.3.0 Try again later")
    sender = transport(smtp)
    with pytest.raises(PartialDelivery) as partial:
        sender.send(outgoing("ukendt@kommune.example", "travl@kommune.example"))
    assert partial.value.delivered == () and partial.value.temporary == ("travl@kommune.example",)
    smtp.refuse("lukker@kommune.example", "421 4.3.2 Shutting down")
    with pytest.raises(TransientError, match="421"):
        sender.send(outgoing("a@kommune.example", "lukker@kommune.example"))
    sender.send(outgoing("a@kommune.example"))  # a new session
    assert [m.recipients for m in smtp.messages] == [("a@kommune.example",)]


def test_data_refused_451_is_transient_and_554_permanent(smtp):
    smtp.refuse_data("451 4.3.0 Queue full", "554 5.6.0 Message rejected")
    sender = transport(smtp)
    with pytest.raises(TransientError, match="451"):
        sender.send(outgoing("a@kommune.example"))
    with pytest.raises(PermanentError, match="554"):
        sender.send(outgoing("a@kommune.example"))
    sender.send(outgoing("a@kommune.example"))
    assert [m.recipients for m in smtp.messages] == [("a@kommune.example",)]


def test_bad_password_is_permanent(smtp):
    with pytest.raises(PermanentError, match="refused the login"):
        transport(smtp, password="wrong").send(outgoing("a@kommune.example"))


def test_plaintext_only_to_loopback():
    with pytest.raises(ConfigError) as refused:
        SmtpTransport("smtp.kommune.example", 25, "none")
    message = str(refused.value)
    assert "smtp.kommune.example" in message and message.endswith(".") and ". " not in message


def test_server_down_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sender = SmtpTransport("127.0.0.1", port, "starttls", timeout=5)
    with pytest.raises(TransientError, match=f"127.0.0.1:{port}"):
        sender.send(outgoing("a@kommune.example"))
