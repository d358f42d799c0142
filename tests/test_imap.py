"""ImapSource against a real Dovecot on 127.0.0.1 (STARTTLS and IMAPS)."""

from __future__ import annotations

import imaplib
import logging
import socket
import threading
from datetime import datetime, timedelta, timezone

import pytest

from scheduler.errors import ConfigError
from scheduler.mail.imap import ImapSource, encode_mailbox, parse_internaldate, uid_set
from scheduler.ports import Disposition, MailSource, PermanentError, TransientError
from scheduler.tls import client_context
from tests.servers.dovecot import Dovecot, decode_mutf7

# In the past: Dovecot ignores an APPEND date in the future.
T0 = datetime(2025, 1, 6, 9, 0, tzinfo=timezone(timedelta(hours=1)))
CPR = "0101901234"  # fictitious; must never reach a log line


def mail(n: int) -> bytes:
    return (f"From: sagsbehandler{n}@kommune.example\r\nTo: sparring@kommune.example\r\n"
            f"Subject: Punkt {n}\r\nMessage-ID: <m{n}@kommune.example>\r\n"
            f"Date: Mon, 4 Jan 2027 08:00:00 +0100\r\n\r\nCPR: {CPR}\r\nHelbred: linje {n}\r\n").encode()


def source(server: Dovecot, security: str = "starttls", **options) -> ImapSource:
    port = server.imaps_port if security == "tls" else server.imap_port
    options.setdefault("ssl_context", client_context(server.ca_file))
    return ImapSource(host=server.host, port=port, security=security, username=server.user,
                      password=server.password, folder="INBOX", batch_size=options.pop("batch_size", 200),
                      **options)


@pytest.fixture
def commands(monkeypatch) -> list[tuple]:
    """Every IMAP command imaplib sends, as (name, first argument), waited for or pipelined."""
    sent: list[tuple] = []
    original = imaplib.IMAP4._command

    def spy(self, name, *args):
        sent.append((name, *(a for a in args[:1])))
        return original(self, name, *args)

    monkeypatch.setattr(imaplib.IMAP4, "_command", spy)
    return sent


def test_encodes_folder_names_in_modified_utf7():
    assert encode_mailbox("Karantæne") == "Karant&AOY-ne"
    assert encode_mailbox("A&B") == "A&-B"
    assert encode_mailbox("INBOX") == "INBOX"
    for name in ("Karantæne", "Økonomi/Årsplan", "日本語 og æøå", "a&b~", "ÆØÅ"):
        assert decode_mutf7(encode_mailbox(name)) == name


def test_uid_sets_are_compact():
    assert uid_set([3, 1, 2, 7, 9, 10]) == "1:3,7,9:10"
    assert uid_set([5]) == "5"


def test_internaldate_is_aware():
    moment = parse_internaldate(b'INTERNALDATE " 4-Jan-2027 09:12:00 +0100"')
    assert moment == datetime(2027, 1, 4, 8, 12, tzinfo=timezone.utc)
    assert moment.utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_fetch_batches_and_uses_internaldate(imap_mailbox, commands, security):
    # Appended newest first: arrival order must come from INTERNALDATE.
    for n in reversed(range(5)):
        imap_mailbox.append(mail(n), T0 + timedelta(minutes=n))
    src = source(imap_mailbox, security, batch_size=2)
    assert isinstance(src, MailSource)
    mails = src.fetch(limit=50)
    assert [m.received_at for m in mails] == [T0 + timedelta(minutes=n) for n in range(5)]
    assert [f"Punkt {n}".encode() in m.raw for n, m in enumerate(mails)] == [True] * 5
    fetches = [c for c in commands if c[:2] == ("UID", "FETCH")]
    assert len(fetches) == 3  # ceil(5 / 2): one per batch, none per mail
    assert len(src.fetch(limit=50)) == 5  # PEEK: fetching changes nothing
    src.close()


def test_fetch_limit_takes_the_oldest(imap_mailbox):
    for n in range(4):
        imap_mailbox.append(mail(n), T0 + timedelta(minutes=n))
    src = source(imap_mailbox)
    assert [m.received_at for m in src.fetch(limit=2)] == [T0, T0 + timedelta(minutes=1)]
    src.close()


def test_settle_moves_per_disposition_into_created_danish_folders(imap_mailbox, commands):
    for n in range(4):
        imap_mailbox.append(mail(n), T0 + timedelta(minutes=n))
    src = source(imap_mailbox)
    refs = [m.ref for m in src.fetch(limit=10)]
    src.settle({Disposition.PROCESSED: refs[:2], Disposition.QUARANTINE: refs[2:3],
                Disposition.IGNORED: refs[3:], Disposition.REJECTED: []})
    assert src.fetch(limit=10) == [], "settled mails are not fetched again"
    assert len([c for c in commands if c[:2] == ("UID", "MOVE")]) == 3
    seen = imap_mailbox.folders()  # a second connection
    assert seen == {"INBOX": 0, "Behandlet": 2, "Karantæne": 1, "Ignoreret": 1}
    src.settle({Disposition.PROCESSED: refs[:2]})  # already moved: harmless
    assert src.fetch(limit=10) == []
    assert imap_mailbox.folders() == seen
    src.close()


def test_moves_are_pipelined_behind_the_next_fetch(imap_mailbox, commands):
    """The server moves one batch while the caller decides the next: the
    MOVE is sent after the next FETCH and answered by the next settle."""
    for n in range(4):
        imap_mailbox.append(mail(n), T0 + timedelta(minutes=n))
    src = source(imap_mailbox)
    first = [m.ref for m in src.fetch(limit=3)]
    src.settle({Disposition.PROCESSED: first})
    assert imap_mailbox.folders() == {"INBOX": 4}, "not moved yet"
    second = src.fetch(limit=10)
    assert [m.raw.count(b"Punkt 3") for m in second] == [1], "only the mail not settled"
    names = [c[:2] for c in commands]
    assert names.index(("UID", "MOVE")) > names.index(("UID", "FETCH")), "sent after the fetch"
    src.settle({Disposition.REJECTED: [m.ref for m in second]})
    assert imap_mailbox.folders() == {"INBOX": 1, "Behandlet": 3}, "the first batch is moved"
    src.close()
    assert imap_mailbox.folders() == {"INBOX": 0, "Behandlet": 3, "Afvist": 1}, "close moves the rest"


def test_a_move_lost_with_the_connection_is_sent_again(imap_mailbox):
    for n in range(3):
        imap_mailbox.append(mail(n), T0 + timedelta(minutes=n))
    src = source(imap_mailbox)
    src.settle({Disposition.PROCESSED: [m.ref for m in src.fetch(limit=2)]})
    assert len(src.fetch(limit=10)) == 1  # sends the MOVE, not yet answered
    src._conn.sock.shutdown(socket.SHUT_RDWR)
    assert len(src.fetch(limit=10)) == 1, "the third mail again, on a new connection; the settled two not"
    src.wait(0.1)  # moves what is pending before idling
    assert imap_mailbox.folders() == {"INBOX": 1, "Behandlet": 2}
    src.close()


def test_a_target_folder_deleted_behind_our_back_is_created_again(imap_mailbox):
    imap_mailbox.append(mail(0), T0)
    src = source(imap_mailbox)
    src.settle({Disposition.PROCESSED: [m.ref for m in src.fetch(limit=10)]})
    src.close()
    imap_mailbox.append(mail(1), T0 + timedelta(minutes=1))
    other = source(imap_mailbox)
    refs = [m.ref for m in other.fetch(limit=10)]
    other._conn.delete(encode_mailbox("Behandlet"))
    other._known_folders.add("Behandlet")  # it still believes the folder is there
    other.settle({Disposition.PROCESSED: refs})
    other.close()
    assert imap_mailbox.folders() == {"INBOX": 0, "Behandlet": 1}


def test_settle_without_move_copies_and_expunges(imap_mailbox, commands):
    for n in range(3):
        imap_mailbox.append(mail(n), T0 + timedelta(minutes=n))
    src = source(imap_mailbox, "tls", folders={Disposition.REJECTED: "Afviste punkter"})
    refs = [m.ref for m in src.fetch(limit=10)]
    src._caps = src._caps - {"MOVE"}  # as on a server without RFC 6851
    src.settle({Disposition.REJECTED: refs[:2]})
    assert [m.ref for m in src.fetch(limit=10)] == refs[2:]
    assert not [c for c in commands if c[:2] == ("UID", "MOVE")]
    assert [c[:2] for c in commands if c[:2] == ("UID", "EXPUNGE")] == [("UID", "EXPUNGE")]
    assert imap_mailbox.folders() == {"INBOX": 1, "Afviste punkter": 2}
    src.close()


def test_idle_wakes_when_another_connection_appends(imap_mailbox):
    src = source(imap_mailbox)
    assert src.fetch(limit=10) == []
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(src.wait(30)))
    waiter.start()
    imap_mailbox.append(mail(1), T0)
    waiter.join(40)
    assert result == [True]
    assert len(src.fetch(limit=10)) == 1  # the connection is usable after DONE
    src.close()


def test_a_purge_from_another_thread_waits_for_idle_to_end(imap_mailbox):
    """The daemon's scheduler thread purges (retention) through the source its
    intake thread idles on: the two never talk over each other."""
    imap_mailbox.append(mail(0), T0)
    src = source(imap_mailbox)
    src.settle({Disposition.PROCESSED: [m.ref for m in src.fetch(limit=10)]})
    idled: list[bool] = []
    waiter = threading.Thread(target=lambda: idled.append(src.wait(1.5)))
    waiter.start()
    purged = src.purge_settled(T0 + timedelta(days=400))  # while the other thread is in IDLE
    waiter.join(10)
    assert purged == 1 and idled == [False]
    assert src.fetch(limit=10) == [] and imap_mailbox.folders() == {"INBOX": 0, "Behandlet": 0}
    src.close()


def test_wait_without_new_mail_times_out(imap_mailbox):
    src = source(imap_mailbox, "tls")
    assert src.wait(0.5) is False
    assert src.fetch(limit=10) == []
    src.close()


def test_reconnects_after_a_dropped_connection(imap_mailbox):
    imap_mailbox.append(mail(1), T0)
    src = source(imap_mailbox)
    assert len(src.fetch(limit=10)) == 1
    src._conn.sock.shutdown(socket.SHUT_RDWR)  # the server or a firewall cut it
    assert len(src.fetch(limit=10)) == 1
    src.close()


def test_plaintext_only_to_loopback(imap_mailbox):
    with pytest.raises(ConfigError) as refused:
        ImapSource("imap.kommune.example", 143, "none", "u", "p")
    message = str(refused.value)
    assert "imap.kommune.example" in message and message.endswith(".")
    assert ". " not in message and "\n" not in message  # one sentence
    imap_mailbox.append(mail(1), T0)
    src = source(imap_mailbox, "none", ssl_context=None)
    assert len(src.fetch(limit=10)) == 1
    src.close()


def test_bad_password_is_permanent(dovecot):
    src = ImapSource(dovecot.host, dovecot.imaps_port, "tls", dovecot.user, "wrong",
                     ssl_context=client_context(dovecot.ca_file))
    with pytest.raises(PermanentError, match="refused the login"):
        src.fetch(limit=1)


def test_unverified_certificate_is_refused(dovecot):
    src = ImapSource(dovecot.host, dovecot.imap_port, "starttls", dovecot.user, dovecot.password,
                     ssl_context=client_context())  # system CAs only
    with pytest.raises(PermanentError, match="certificate"):
        src.fetch(limit=1)


def test_server_down_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once closed
    src = ImapSource("127.0.0.1", port, "tls", "u", "p")
    with pytest.raises(TransientError, match=f"127.0.0.1:{port}"):
        src.fetch(limit=1)
    assert src.wait(0.2) is False  # waiting on a dead server neither raises nor spins


def test_mail_content_never_logged(imap_mailbox, caplog):
    caplog.set_level(logging.DEBUG)
    imap_mailbox.append(mail(1), T0)
    src = source(imap_mailbox)
    src.settle({Disposition.PROCESSED: [m.ref for m in src.fetch(limit=10)]})
    src.close()
    assert caplog.records and CPR not in caplog.text and "Helbred" not in caplog.text
