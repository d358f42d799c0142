"""The IMAP mail source (imaplib): batched fetches, one MOVE per folder, IDLE.

A mail is fetched with ``BODY.PEEK[]`` (the mailbox is not changed), in
one ``UID FETCH`` per batch, and moved to the folder of its disposition
only after the decision is committed: one ``UID MOVE`` per disposition,
or COPY + STORE \\Deleted + UID EXPUNGE where MOVE is not offered.

The moves are pipelined: ``settle`` notes them, and the next ``fetch``
sends them right after it has the next batch, without waiting for the
answer, so the server moves one batch while the caller decides the next
(a UID MOVE of 500 mails is about 35 ms of the server's time). Until
moved, settled mails are not fetched again. ``settle`` then reads the
answer; ``wait``, ``purge_settled`` and ``close`` move what is still
pending first, and so does a ``fetch`` that finds nothing new. A move
lost with the connection is sent again on the next one. TLS is
required (IMAPS or STARTTLS, certificates verified); plaintext only to a
loopback address. A dropped connection is reopened once per call. Mail
content never reaches a log line or an exception message.

The wire format (mailbox names, UID sets, FETCH data, status checks) is in
``imap_wire``; its public helpers are re-exported here.
"""

from __future__ import annotations

import functools
import imaplib
import logging
import select
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

from scheduler.mail.imap_wire import (
    FETCH_ITEMS,
    encode_mailbox,
    expect_ok,
    is_exists,
    mailbox_arg,
    parse_fetch,
    parse_internaldate,
    uid_set,
    uids_of,
)
from scheduler.ports import (
    Disposition,
    IncomingMail,
    PermanentError,
    TransientError,
    chunked,
)
from scheduler.tls import client_context, require_tls_or_loopback

__all__ = [  # the wire helpers callers and tests import from here stay importable
    "DEFAULT_FOLDERS", "FETCH_ITEMS", "MAX_IDLE", "ImapSource",
    "encode_mailbox", "mailbox_arg", "parse_fetch", "parse_internaldate", "uid_set",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_FOLDERS = {
    Disposition.PROCESSED: "Behandlet",
    Disposition.REJECTED: "Afvist",
    Disposition.QUARANTINE: "Karantæne",
    Disposition.IGNORED: "Ignoreret",
}
MAX_IDLE = 25 * 60.0  # RFC 2177: re-issue IDLE before 29 minutes


def _serialised(method: Callable) -> Callable:
    """One exchange on the connection at a time: the daemon's intake thread
    and its scheduler thread (the nightly retention purge) share the source.
    A purge that comes during IDLE waits for it to end (seconds)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


def _searchable(message_id: str) -> bool:
    """Fit for an IMAP quoted string as it is: printable ASCII, no quote or backslash."""
    return bool(message_id) and message_id.isascii() and message_id.isprintable() and not {'"', "\\"} & set(message_id)


class ImapSource:
    """ports.MailSource over IMAP (Dovecot, Exchange's IMAP, any IMAP4rev1)."""

    def __init__(self, host: str, port: int, security: str, username: str, password: str,
                 folder: str = "INBOX", folders: Mapping[Disposition, str] | None = None,
                 batch_size: int = 200, ssl_context: ssl.SSLContext | None = None,
                 idle: bool = True, timeout: float = 60.0) -> None:
        require_tls_or_loopback(host, security, "intake.imap")
        self.host, self.port, self.security = host, port, security
        self.username, self._password = username, password
        self.folder = folder
        self.folders = {**DEFAULT_FOLDERS, **(folders or {})}
        self.batch_size = max(1, batch_size)
        self.ssl_context = ssl_context or client_context()  # imaplib's default does not verify
        self.idle, self.timeout = idle, timeout
        self._conn: imaplib.IMAP4 | None = None
        self._caps: frozenset[str] = frozenset()
        self._validity: bytes | None = None  # UIDVALIDITY of the open folder
        self._fetched_validity: bytes | None = None
        self._known_folders: set[str] = set()
        self._unsent: dict[Disposition, list[int]] = {}  # settled, to be moved (see the docstring)
        self._unsent_validity: bytes | None = None  # the UIDVALIDITY those UIDs belong to
        self._sent: list[tuple[bytes, Disposition, list[int]]] = []  # UID MOVEs not yet answered
        self._lock = threading.RLock()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    # -- connection --------------------------------------------------------

    def _open(self) -> imaplib.IMAP4:
        conn = self._dial()
        try:
            self._login(conn)
            # imaplib keeps the pre-login list; MOVE and others appear only now.
            typ, data = conn.capability()
            self._caps = frozenset(data[-1].decode().upper().split()) if typ == "OK" else frozenset()
            conn.capabilities = tuple(self._caps)
            typ, _ = conn.select(mailbox_arg(self.folder))
            self._validity = (conn.response("UIDVALIDITY")[1] or [None])[-1]
            conn.untagged_responses.pop("EXISTS", None)  # the count SELECT gave; not news
        except (OSError, imaplib.IMAP4.abort) as exc:
            _quietly(conn.shutdown)
            raise TransientError(f"The IMAP server {self.where} closed the connection while logging in "
                                 f"({type(exc).__name__}).") from None
        if typ != "OK":
            _quietly(conn.logout)
            raise PermanentError(f"The IMAP folder {self.folder!r} cannot be opened on {self.where}.")
        self._conn = conn
        log.info("imap connected server=%s security=%s", self.where, self.security)
        return conn

    def _login(self, conn: imaplib.IMAP4) -> None:
        try:
            conn.login(self.username, self._password)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            _quietly(conn.shutdown)
            if "[UNAVAILABLE]" in str(exc):
                raise TransientError(f"The IMAP server {self.where} cannot log in users right now.") from None
            raise PermanentError(f"The IMAP server {self.where} refused the login for {self.username!r}; "
                                 "check the user name and password.") from None

    def _dial(self) -> imaplib.IMAP4:
        try:
            if self.security == "tls":
                return imaplib.IMAP4_SSL(self.host, self.port, ssl_context=self.ssl_context,
                                         timeout=self.timeout)
            conn = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
            if self.security == "starttls":
                try:
                    self._starttls(conn)
                except BaseException:
                    _quietly(conn.shutdown)
                    raise
            return conn
        except ssl.SSLCertVerificationError:
            raise PermanentError(f"The certificate of the IMAP server {self.where} could not be verified; "
                                 "set ca_file to the CA that signed it.") from None
        except (OSError, imaplib.IMAP4.abort) as exc:
            raise TransientError(f"The IMAP server {self.where} cannot be reached "
                                 f"({type(exc).__name__}).") from None
        except imaplib.IMAP4.error:
            raise PermanentError(f"The IMAP server {self.where} refused STARTTLS.") from None

    def _starttls(self, conn: imaplib.IMAP4) -> None:
        if "STARTTLS" not in conn.capabilities:
            raise PermanentError(f"The IMAP server {self.where} does not offer STARTTLS; "
                                 "use security = \"tls\" with the IMAPS port.")
        conn.starttls(ssl_context=self.ssl_context)  # re-reads CAPABILITY itself

    def _drop(self) -> None:
        if self._conn is not None:
            _quietly(self._conn.shutdown)
        self._conn = None
        for _, disposition, uids in self._sent:  # unanswered: sent again on the next connection
            self._unsent.setdefault(disposition, []).extend(uids)
        self._sent.clear()

    def _call(self, operation: Callable[[imaplib.IMAP4], T]) -> T:
        """Run ``operation``; reopen a dropped connection once and retry."""
        for attempt in (1, 2):
            conn = self._conn or self._open()
            try:
                return operation(conn)
            except (imaplib.IMAP4.abort, OSError) as exc:
                self._drop()
                if attempt == 2:
                    raise TransientError(f"The connection to the IMAP server {self.where} was lost "
                                         f"({type(exc).__name__}).") from None
                log.info("imap connection lost; reconnecting server=%s", self.where)
            except imaplib.IMAP4.error:
                self._drop()
                raise PermanentError(f"The IMAP server {self.where} rejected a command.") from None
        raise AssertionError("unreachable")

    @_serialised
    def check(self) -> str:
        """Log in, open the folder and NOOP (``check-connection``); changes nothing."""
        self._call(lambda conn: expect_ok(conn.noop()[0], "NOOP"))
        return f"{self.where}, folder {self.folder}"

    # -- MailSource ----------------------------------------------------------

    @_serialised
    def fetch(self, limit: int) -> list[IncomingMail]:
        return self._call(lambda conn: self._fetch(conn, limit))

    def _fetch(self, conn: imaplib.IMAP4, limit: int) -> list[IncomingMail]:
        self._complete_moves(conn)
        # A server reports mail delivered since our last command only when asked
        # (Dovecot with NOOP); SEARCH alone sees the mailbox as it last told us.
        expect_ok(conn.noop()[0], "NOOP")
        typ, data = conn.uid("SEARCH", "UNDELETED")
        expect_ok(typ, "UID SEARCH")
        settled = {uid for uids in self._unsent.values() for uid in uids}
        # UIDs rise in arrival order, so the lowest are the oldest.
        found = (int(u) for u in b" ".join(d for d in data if d).split())
        uids = sorted(u for u in found if u not in settled)[:max(0, limit)]
        mails: list[IncomingMail] = []
        for batch in chunked(uids, self.batch_size):
            typ, data = conn.uid("FETCH", uid_set(batch), FETCH_ITEMS)
            expect_ok(typ, "UID FETCH")
            mails.extend(parse_fetch(data))
        self._fetched_validity = self._validity
        self._send_moves(conn)  # the server moves the last batch while the caller decides this one
        if not mails:
            self._complete_moves(conn)  # nothing to overlap with: leave the inbox tidy
        return sorted(mails, key=lambda m: (m.received_at, int(m.ref)))

    @_serialised
    def settle(self, moves: Mapping[Disposition, Sequence[str]]) -> None:
        """Note the moves; they are sent with the next fetch (module docstring)."""
        wanted = {Disposition(d): uids_of(refs) for d, refs in moves.items() if refs}
        if self._sent:
            self._call(self._complete_moves)  # the previous batch's: done by now
        for disposition, uids in wanted.items():
            self._unsent.setdefault(disposition, []).extend(uids)
            self._unsent_validity = self._fetched_validity

    def _send_all(self) -> None:
        """Move everything settled now, and wait for it."""
        if self._unsent or self._sent:
            self._call(lambda conn: (self._send_moves(conn), self._complete_moves(conn)))

    def _send_moves(self, conn: imaplib.IMAP4) -> None:
        if not self._unsent:
            return
        if self._unsent_validity is not None and self._validity != self._unsent_validity:
            # The UIDs no longer mean the mails we fetched; they come again.
            log.warning("imap UIDVALIDITY changed; settle skipped server=%s", self.where)
            self._unsent.clear()
            return
        unsent, self._unsent = self._unsent, {}
        for disposition, uids in unsent.items():
            folder = self.folders[disposition]
            self._ensure_folder(conn, folder)
            if "MOVE" in self._caps:  # pipelined: answered later, in _complete_moves
                self._sent.append((conn._command("UID", "MOVE", uid_set(uids), mailbox_arg(folder)),
                                   disposition, uids))
            else:
                self._move(conn, uid_set(uids), folder)

    def _complete_moves(self, conn: imaplib.IMAP4) -> None:
        while self._sent:
            tag, disposition, uids = self._sent[0]
            typ, _ = conn._command_complete("UID", tag)
            del self._sent[0]
            if typ != "OK":  # e.g. [TRYCREATE]: the folder was deleted behind our back
                self._known_folders.discard(self.folders[disposition])
                self._move(conn, uid_set(uids), self.folders[disposition])
        conn.untagged_responses.pop("EXPUNGE", None)  # one per moved mail: never read, never kept

    def _move(self, conn: imaplib.IMAP4, uids: str, folder: str) -> None:
        """One move, waited for."""
        target = mailbox_arg(folder)
        self._ensure_folder(conn, folder)
        if "MOVE" in self._caps:
            expect_ok(conn.uid("MOVE", uids, target)[0], "UID MOVE")
            return
        expect_ok(conn.uid("COPY", uids, target)[0], "UID COPY")
        expect_ok(conn.uid("STORE", uids, "+FLAGS.SILENT", r"(\Deleted)")[0], "UID STORE")
        if "UIDPLUS" in self._caps:
            expect_ok(conn.uid("EXPUNGE", uids)[0], "UID EXPUNGE")
        else:
            expect_ok(conn.expunge()[0], "EXPUNGE")

    def _ensure_folder(self, conn: imaplib.IMAP4, folder: str) -> None:
        """Create (and subscribe) a missing target folder, once per source."""
        if folder in self._known_folders:
            return
        name = mailbox_arg(folder)
        typ, data = conn.list('""', name)
        if typ != "OK" or not [d for d in data if d]:
            typ, data = conn.create(name)
            if typ != "OK" and b"ALREADYEXISTS" not in b" ".join(d for d in data if d):
                raise PermanentError(f"The IMAP folder {folder!r} cannot be created on {self.where}.")
            conn.subscribe(name)
            log.info("imap folder created server=%s", self.where)
        self._known_folders.add(folder)

    @_serialised
    def purge_settled(self, before: datetime) -> int:
        """Delete settled mails that arrived before ``before`` (retention):
        one SEARCH and one STORE + EXPUNGE per settled folder."""
        self._send_all()
        return self._call(lambda conn: sum(self._purge(conn, f, before) for f in set(self.folders.values())))

    def _purge(self, conn: imaplib.IMAP4, folder: str, before: datetime) -> int:
        try:
            typ, _ = conn.select(mailbox_arg(folder))
            if typ != "OK":
                return 0  # never created: nothing settled there
            typ, data = conn.uid("SEARCH", "BEFORE", before.strftime("%d-%b-%Y"))
            expect_ok(typ, "UID SEARCH")
            uids = sorted(int(u) for u in b" ".join(d for d in data if d).split())
            if uids:
                expect_ok(conn.uid("STORE", uid_set(uids), "+FLAGS.SILENT", r"(\Deleted)")[0], "UID STORE")
                expect_ok(conn.expunge()[0], "EXPUNGE")
            return len(uids)
        finally:
            conn.select(mailbox_arg(self.folder))
            conn.untagged_responses.pop("EXISTS", None)

    @_serialised
    def erase_settled(self, message_ids: Iterable[str]) -> int:
        """Delete the mails with these Message-IDs in the settled folders and
        the inbox (a citizen's erasure): one SEARCH per Message-ID and folder,
        one EXPUNGE per folder."""
        wanted = [m.strip("<> ") for m in message_ids if _searchable(m.strip("<> "))]
        if not wanted:
            return 0
        self._send_all()
        folders = {self.folder, *self.folders.values()}
        return self._call(lambda conn: sum(self._erase(conn, f, wanted) for f in folders))

    def _erase(self, conn: imaplib.IMAP4, folder: str, message_ids: list[str]) -> int:
        try:
            typ, _ = conn.select(mailbox_arg(folder))
            if typ != "OK":
                return 0
            uids: set[int] = set()
            for message_id in message_ids:
                typ, data = conn.uid("SEARCH", "HEADER", "Message-ID", f'"<{message_id}>"')
                expect_ok(typ, "UID SEARCH")
                uids.update(int(u) for u in b" ".join(d for d in data if d).split())
            if uids:
                expect_ok(conn.uid("STORE", uid_set(sorted(uids)), "+FLAGS.SILENT", r"(\Deleted)")[0], "UID STORE")
                expect_ok(conn.expunge()[0], "EXPUNGE")
            return len(uids)
        finally:
            conn.select(mailbox_arg(self.folder))
            conn.untagged_responses.pop("EXISTS", None)

    @_serialised
    def wait(self, timeout: float) -> bool:
        if not self.idle:
            time.sleep(max(0.0, timeout))
            return False
        deadline = time.monotonic() + timeout
        try:
            self._send_all()  # nothing settled stays in the inbox while we idle
            conn = self._conn or self._open()
            if conn.untagged_responses.pop("EXISTS", None):
                return True  # new mail was announced during the last command (a MOVE)
            if "IDLE" not in self._caps:
                time.sleep(max(0.0, timeout))
                return False
            return self._idle(conn, min(timeout, MAX_IDLE))
        except (TransientError, PermanentError, imaplib.IMAP4.error, OSError) as exc:
            # fetch() reports the failure; here we only must not spin.
            log.info("imap wait failed server=%s error=%s", self.where, type(exc).__name__)
            self._drop()
            time.sleep(max(0.0, deadline - time.monotonic()))
            return False

    def _idle(self, conn: imaplib.IMAP4, timeout: float) -> bool:
        """RFC 2177 IDLE (imaplib has none): True on an untagged EXISTS."""
        tag = conn._new_tag()
        conn.tagged_commands.pop(tag, None)  # we read the tagged reply ourselves
        conn.send(tag + b" IDLE\r\n")
        woke = False
        while not (line := _line(conn)).startswith(b"+"):
            if line.startswith(tag):  # IDLE refused
                expect_ok(line.split(b" ", 2)[1].decode(), "IDLE")
                return woke
            woke = woke or is_exists(line)
        deadline = time.monotonic() + timeout
        while not woke and (remaining := deadline - time.monotonic()) > 0:
            if not _buffered(conn) and not select.select([conn.sock], [], [], remaining)[0]:
                continue
            woke = is_exists(_line(conn))
        conn.send(b"DONE\r\n")
        while not (line := _line(conn)).startswith(tag):
            woke = woke or is_exists(line)  # a wake-up that came with the last read
        expect_ok(line.split(b" ", 2)[1].decode(), "IDLE")
        return woke

    @_serialised
    def close(self) -> None:
        try:
            self._send_all()
        except (TransientError, PermanentError) as exc:  # they are fetched again, and known by Message-ID
            log.warning("imap moves left undone at close server=%s error=%s", self.where, type(exc).__name__)
        if self._conn is not None:
            _quietly(self._conn.logout)
        self._conn = None


def _line(conn: imaplib.IMAP4) -> bytes:
    line = conn.readline()
    if not line:
        raise imaplib.IMAP4.abort("connection closed")
    return line


def _buffered(conn: imaplib.IMAP4) -> bool:
    """Bytes select() cannot see: decrypted ones in the TLS layer, or ones
    imaplib's reader already buffered (an EXISTS that came with "+ idling")."""
    pending = getattr(conn.sock, "pending", None)
    if pending and pending():
        return True
    reader = getattr(conn, "file", None)
    if reader is None:
        return False
    timeout = conn.sock.gettimeout()
    conn.sock.settimeout(0)  # peek must not block when nothing is buffered
    try:
        return bool(reader.peek(1))
    except (BlockingIOError, ssl.SSLWantReadError, TimeoutError, OSError):
        return False
    finally:
        conn.sock.settimeout(timeout)


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception:  # closing after a failure: nothing useful to add
        pass
