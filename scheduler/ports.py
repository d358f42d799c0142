"""The small interfaces between the core and the outside world.

Each adapter (folder, IMAP, Exchange, Exchange Online through Graph, SMTP,
local calendar, CalDAV, the database) implements one of these. Contracts
are in the docstrings: what a method returns, raises, and what it may
assume about ordering. Adapters
raise ``TransientError`` for what a retry may cure (a timeout, a busy
server) and ``PermanentError`` for what it will not (a refused recipient,
bad credentials); nothing else escapes them, but a transport's
``PartialDelivery`` (some recipients refused, the others served).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol, runtime_checkable

from scheduler.model import BusyInterval, Meeting


class TransientError(Exception):
    """A failure a later retry may cure. ``retry_after`` in seconds, if the peer said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DiskFull(TransientError):
    """The local disk is full (ENOSPC): retried until there is space, never
    counted towards an entry's attempts, so nothing fails for want of it."""


class PermanentError(Exception):
    """A failure no retry will cure; it is reported to the administrator."""


class PartialDelivery(Exception):
    """The server took a message for some recipients and refused others.

    ``refused`` maps each refused address to the server's reply code: a 4xx
    may be retried for that address alone, a 5xx fails it alone. Every
    recipient not in ``refused`` has the message (``delivered``: it is never
    sent to them again)."""

    def __init__(self, message: str, refused: Mapping[str, int], delivered: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.refused = dict(refused)
        self.delivered = tuple(delivered)

    @property
    def temporary(self) -> tuple[str, ...]:
        return tuple(a for a, code in self.refused.items() if 400 <= code < 500)

    @property
    def permanent(self) -> tuple[str, ...]:
        return tuple(a for a, code in self.refused.items() if not 400 <= code < 500)


class Disposition(str, Enum):
    """Where a mail goes once its decision is committed. Never deleted."""

    PROCESSED = "processed"
    REJECTED = "rejected"
    QUARANTINE = "quarantine"
    IGNORED = "ignored"


@dataclass(frozen=True)
class IncomingMail:
    """One mail as the mailbox holds it.

    ``ref`` identifies it within its source (a file name, an IMAP UID, an EWS
    item id, a Graph message id). ``received_at`` is when the *mailbox*
    received it (IMAP INTERNALDATE, Exchange's DateTimeReceived, Graph's
    receivedDateTime, a file's mtime), never the sender's Date header:
    deadlines are judged on it.
    """

    ref: str
    raw: bytes
    received_at: datetime


@runtime_checkable
class MailSource(Protocol):
    """A mailbox that sparring reads agenda items from."""

    def fetch(self, limit: int) -> list[IncomingMail]:
        """Up to ``limit`` mails not yet settled, oldest arrival first.

        Fetching does not change the mailbox: a mail fetched but not settled
        is fetched again next time (at-least-once; the caller de-duplicates
        on Message-ID).
        """

    def settle(self, moves: Mapping[Disposition, Sequence[str]]) -> None:
        """Move the mails named by ``ref`` to the folder of their disposition.

        Called only after the decisions are committed. One round trip per
        disposition (Graph: per $batch of 20 moves), not per mail. Refs
        already moved are ignored. A source may send the moves with its
        next call (``fetch``, ``wait``, ``close``), so that the server moves
        them while the caller decides the next batch; until moved, settled
        mails are not fetched again.
        """

    def wait(self, timeout: float) -> bool:
        """Block until new mail may have arrived or ``timeout`` seconds pass.

        Returns True when the server signalled new mail (IMAP IDLE), False on
        timeout. Sources without push simply sleep.
        """

    def close(self) -> None: ...


class StateStore(Protocol):
    """Small operational facts kept in the database (``App`` is one): a
    source's position in its mailbox, for instance. No personal data."""

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...


@dataclass(frozen=True)
class OutgoingMail:
    """A finished RFC 5322 message and its envelope."""

    sender: str
    recipients: tuple[str, ...]
    message: bytes
    kind: str = "mail"  # receipt, agenda, invitation, alert: names the outbox file


@runtime_checkable
class MailTransport(Protocol):
    """Sends finished messages (SMTP, the outbox folder, Exchange)."""

    def send(self, mail: OutgoingMail) -> None:
        """Deliver ``mail`` to every recipient or raise.

        Raises ``TransientError`` or ``PermanentError`` when no recipient
        has it, and ``PartialDelivery`` when the server refused some and
        took it for the others (SMTP: per-recipient RCPT replies); a
        transport that cannot tell recipients apart (folder, EWS, Graph)
        never raises that. Sending the same mail twice after a crash is
        possible; the outbox keeps it rare.
        """

    def close(self) -> None: ...


@runtime_checkable
class CalendarBackend(Protocol):
    """The forum's calendar: where sessions, slots and bookings live.

    ``sends_invitations`` is True when the server mails the attendees itself
    (Exchange); otherwise sparring mails iTIP invitations through the
    outbox after each write.
    """

    sends_invitations: bool

    def put(self, meeting: Meeting) -> None:
        """Create or replace the event ``meeting.uid`` (or its occurrence
        ``recurrence_id``). Idempotent: putting the same meeting twice
        leaves one event. A series' ``recurrence.exdates`` are occurrences
        that do not take place: none of them may be listed afterwards (an
        override stored for one goes too)."""

    def put_many(self, meetings: Sequence[Meeting]) -> None:
        """``put`` for many, in as few round trips as the protocol allows."""

    def cancel(self, meeting: Meeting) -> None:
        """Cancel the event (or the one occurrence with ``recurrence_id``).
        Cancelling what does not exist is not an error.

        ``meeting`` is the event as it was last sent (its times and texts),
        with a SEQUENCE above every one sent before under its UID. A
        cancelled occurrence must no longer be listed as one: it becomes an
        EXDATE of the series (iCalendar stores) or is deleted (Exchange),
        never a STATUS:CANCELLED override that readers still list. A whole
        event cancelled stays, marked cancelled, where the store can say so."""

    def free_busy(
        self, addresses: Sequence[str], start: datetime, end: datetime
    ) -> Mapping[str, list[BusyInterval]]:
        """Busy intervals per address over ``start``..``end``.

        An address the backend cannot see gets one interval of kind UNKNOWN
        over the whole window, never an empty (free) list.
        """

    def close(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""

    def from_wall(self, moment: datetime) -> datetime:
        """A wall-clock time (a file's mtime) on this clock's timeline:
        itself for the system clock, shifted by ``--now``'s offset."""


def chunked(items: Iterable, size: int) -> Iterable[list]:
    """Split ``items`` into lists of at most ``size`` (for batched requests)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
