"""The fault injector (tests/servers/faults.py) against the real test servers:
each toxic and protocol fault does what it says, and healing undoes it."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

import pytest

from scheduler.mail.imap import ImapSource
from scheduler.mail.smtp import SmtpTransport
from scheduler.ports import Disposition, PermanentError, TransientError
from scheduler.tls import client_context
from tests import mails
from tests.servers.faults import http_reply, imap_bye, imap_no
from tests.test_caldav import make_backend
from tests.test_calendar_local import single
from tests.test_smtp import outgoing

pytestmark = pytest.mark.servers


def _smtp(faults, smtp, timeout: float = 10) -> SmtpTransport:
    proxy = faults.smtp
    return SmtpTransport(proxy.host, proxy.port, "starttls", smtp.user, smtp.password,
                         client_context(smtp.ca_file), timeout=timeout, local_hostname="localhost")


def _greeting(proxy, timeout: float = 5) -> bytes:
    with socket.create_connection(proxy.where, timeout=timeout) as sock:
        data = b""
        while chunk := sock.recv(1024):
            data += chunk
            if data.endswith(b"\r\n"):
                break
        return data


def test_down_refuses_and_up_listens_again_on_the_same_port(faults, smtp):
    sender = _smtp(faults, smtp)
    port = faults.smtp.port
    faults.smtp.down()
    with pytest.raises(TransientError, match="cannot be reached"):
        sender.send(outgoing("a@kommune.example"))
    faults.smtp.up()
    assert faults.smtp.port == port
    sender.send(outgoing("a@kommune.example"))
    sender.close()
    assert [m.recipients for m in smtp.messages] == [("a@kommune.example",)]


def test_down_cuts_a_kept_connection(faults, smtp):
    sender = _smtp(faults, smtp)
    sender.send(outgoing("a@kommune.example"))
    faults.smtp.down()
    with pytest.raises(TransientError):
        sender.send(outgoing("b@kommune.example"))
    assert faults.smtp.stats.cut == 1
    faults.smtp.heal()
    sender.send(outgoing("b@kommune.example"))  # reconnects
    sender.close()


def test_a_stall_is_timed_out_by_the_client(faults, smtp):
    faults.smtp.toxic("timeout", timeout=0)  # the greeting never comes
    with pytest.raises(TransientError, match="cannot be reached"):
        _smtp(faults, smtp, timeout=0.5).send(outgoing("a@kommune.example"))
    assert smtp.messages == []


def test_timeout_closes_after_its_time(faults, smtp):
    faults.smtp.toxic("timeout", timeout=100)
    assert _greeting(faults.smtp) == b""  # closed, nothing passed
    assert faults.smtp.stats.cut == 1


def test_limit_data_and_reset_peer_cut_after_so_many_bytes(faults, smtp):
    toxic = faults.smtp.toxic("limit_data", bytes=7)
    assert _greeting(faults.smtp) == b"220 loc"  # "220 localhost ..." cut after 7 bytes
    toxic.remove()
    faults.smtp.toxic("reset_peer", after_bytes=3)
    with pytest.raises(ConnectionResetError):
        _greeting(faults.smtp)
    faults.smtp.heal()
    assert _greeting(faults.smtp).startswith(b"220 ")


def test_reset_peer_at_once_and_toxicity_zero(faults, smtp):
    faults.smtp.toxic("reset_peer", toxicity=0.0)  # applies to no connection
    assert _greeting(faults.smtp).startswith(b"220 ")
    faults.smtp.toxic("reset_peer", timeout=0)
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        _greeting(faults.smtp)


def test_latency_bandwidth_and_slow_close_delay_but_deliver(faults, smtp):
    faults.smtp.toxic("latency", latency=150)
    faults.smtp.toxic("bandwidth", rate=64)
    faults.smtp.toxic("slow_close", delay=50)
    began = time.monotonic()
    assert _greeting(faults.smtp).startswith(b"220 ")
    assert time.monotonic() - began >= 0.15  # a lower bound: never flaky
    with pytest.raises(ValueError):
        faults.smtp.toxic("teleport")


def test_a_cut_mid_fetch_is_transient_and_the_mail_is_fetched_again(faults, imap_mailbox):
    body = "CPR: 010203-1234\n" + "Helbred: " + "x" * 20000 + "\n"
    imap_mailbox.append(mails.plain("a@kommune.example", "Sparring", "Mon, 4 Jan 2027 08:00:00 +0100", "m1", body),
                        datetime(2027, 1, 4, 7, 0, tzinfo=UTC))
    proxy = faults.imap
    source = ImapSource(proxy.host, proxy.port, "none", imap_mailbox.user, imap_mailbox.password, timeout=5)
    source.fetch(10)  # logged in; the next FETCH's answer is cut after 2000 bytes, twice
    proxy.toxic("reset_peer", after_bytes=2000)
    with pytest.raises(TransientError, match="lost"):
        source.fetch(10)
    proxy.heal()
    assert len(source.fetch(10)) == 1
    source.close()


def test_imap_no_on_fetch_and_bye_on_move(faults, imap_mailbox):
    imap_mailbox.append(mails.plain("a@kommune.example", "Sparring", "Mon, 4 Jan 2027 08:00:00 +0100", "m2", "x\n"),
                        datetime(2027, 1, 4, 7, 0, tzinfo=UTC))
    proxy = faults.imap
    source = ImapSource(proxy.host, proxy.port, "none", imap_mailbox.user, imap_mailbox.password, timeout=5)
    rule = proxy.answer(rb"^\S+ UID FETCH ", imap_no(), times=1)
    with pytest.raises((TransientError, PermanentError)):
        source.fetch(10)
    assert rule.hits == 1
    [mail] = source.fetch(10)  # the rule was for once
    proxy.answer(rb"^\S+ UID MOVE ", imap_bye(), close=True)
    source.settle({Disposition.PROCESSED: [mail.ref]})
    source.close()  # the move is lost with the connection: the mail stays in the inbox
    assert imap_mailbox.folders().get("INBOX") == 1


def test_caldav_503_and_412_from_a_rule_in_front_of_radicale(faults, radicale_server):
    backend = make_backend(faults.caldav.url)
    meeting = single("fault-1")
    faults.caldav.answer(r"^PUT ", http_reply(503, "Service Unavailable", {"Retry-After": "1"}), close=True)
    with pytest.raises(TransientError):
        backend.put(meeting)
    faults.caldav.heal()
    faults.caldav.answer(r"^PUT ", http_reply(412, "Precondition Failed"), close=True, times=1)
    with pytest.raises(TransientError, match="changed"):
        backend.put(meeting)
    backend.put(meeting)
    backend.close()


def test_postgres_down_and_back(faults, postgres_server):
    import psycopg

    proxy = faults.postgres
    dsn = dict(host=proxy.host, port=proxy.port, user=postgres_server.user, dbname="postgres", connect_timeout=3)
    with psycopg.connect(**dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        proxy.down()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(**dsn)
    proxy.up()
    with psycopg.connect(**dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
