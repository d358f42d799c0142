"""The audit trail: append-only rows, chained by keyed hashes.

Each row carries the hash of the row before it (``prev_hash``) and its own
(``row_hash`` = HMAC over ``prev_hash`` and the row's fields). The hash is
*keyed* (an HKDF subkey of the master key, through ``FieldCipher.lookup_hash``)
because an unkeyed chain only detects careless edits: someone who can write
to the database could change a row and recompute every hash after it. With
the key outside the database (environment or key file), a changed, inserted
or removed row breaks the chain for anyone who cannot also read the key.
Removing the newest rows is found only against a head hash kept elsewhere:
``verify`` returns it and the nightly purge logs it.

Rows are written in one go at the end of their transaction (``append``),
under a lock (PostgreSQL advisory lock; SQLite's write lock), so two
transactions never fork the chain; ``id`` is the position in the chain.

The trail's own retention (``cut``) removes its oldest rows and appends a
``trail-cut`` row naming the last removed row and its hash: the anchor the
remaining chain starts from, itself protected by the chain.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import Connection, delete, func, insert, select, text

from scheduler.store.crypto import FieldCipher
from scheduler.store.tables import AuditEntry

GENESIS = "0" * 64
CUT = "trail-cut"
# pg_advisory_xact_lock key for appending to the trail ("SPARAUD").
AUDIT_LOCK = 0x5350_4152_4155_44
_TABLE = AuditEntry.__table__
# A CPR number in any form intake accepts; never stored, even in a Message-ID.
_CPR_SHAPE = re.compile(r"\d{6}[\s\-\u2010-\u2015]?\d{4}")


@dataclass(frozen=True)
class Entry:
    """One row to append; ``subject`` is the citizen's keyed CPR hash."""

    action: str
    at: datetime
    actor: str = "system"
    subject: str | None = None
    series: str | None = None
    session_start: datetime | None = None
    message_id: str | None = None
    recipients: tuple[str, ...] = ()
    detail: dict = field(default_factory=dict)


def scrub(message_id: str | None) -> str | None:
    """A Message-ID fit for the trail, in angle brackets as in the header:
    no CPR-shaped digits, cut to size."""
    if not message_id or not message_id.strip("<> "):
        return None
    return "<" + _CPR_SHAPE.sub("[cpr]", message_id.strip("<> "))[:298] + ">"


def _utc(moment: datetime | None) -> datetime | None:
    # Whole seconds: both databases give them back exactly as written.
    return moment.astimezone(timezone.utc).replace(microsecond=0) if moment else None


def _canonical(row: dict) -> str:
    fields = [row["id"], _iso(row["at"]), row["action"], row["actor"], row["subject"], row["series"],
              _iso(row["session_start"]), row["message_id"], row["recipients"], row["detail"]]
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def _iso(moment: datetime | None) -> str | None:
    return _utc(moment).isoformat() if moment else None


def row_hash(cipher: FieldCipher, row: dict) -> str:
    return cipher.lookup_hash(row["prev_hash"] + "\n" + _canonical(row), purpose="audit-chain")


def _lock(connection: Connection) -> None:
    """Serialise appenders until this transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK})
    else:  # any write statement takes SQLite's write lock (none is written)
        connection.exec_driver_sql("UPDATE meta SET value = value WHERE 0")


def _tail(connection: Connection) -> tuple[int, str]:
    last = connection.execute(select(_TABLE.c.id, _TABLE.c.row_hash).order_by(_TABLE.c.id.desc()).limit(1)).first()
    return (last.id, last.row_hash) if last else (0, GENESIS)


def append(connection: Connection, cipher: FieldCipher, entries: Sequence[Entry],
           tail: tuple[int, str] | None = None) -> None:
    """Append ``entries`` in order, chained to the newest row (or ``tail``)."""
    if not entries:
        return
    if tail is None:
        _lock(connection)
        tail = _tail(connection)
    position, previous = tail
    rows = []
    for entry in entries:
        position += 1
        row = {"id": position, "at": _utc(entry.at), "action": entry.action[:32], "actor": entry.actor[:320],
               "subject": entry.subject, "series": entry.series, "session_start": _utc(entry.session_start),
               "message_id": scrub(entry.message_id), "recipients": json.dumps(list(entry.recipients)),
               "detail": json.dumps(entry.detail, sort_keys=True) if entry.detail else None,
               "prev_hash": previous}
        row["row_hash"] = previous = row_hash(cipher, row)
        rows.append(row)
    connection.execute(insert(_TABLE), rows)


def cut(connection: Connection, cipher: FieldCipher, before: datetime, now: datetime) -> int:
    """Remove the rows older than ``before`` (the trail's retention) and
    append the ``trail-cut`` anchor; returns how many were removed."""
    _lock(connection)
    through = connection.execute(
        select(_TABLE.c.id, _TABLE.c.row_hash).where(_TABLE.c.at < _utc(before))
        .order_by(_TABLE.c.id.desc()).limit(1)).first()
    if through is None:
        return 0
    tail = _tail(connection)
    removed = connection.execute(delete(_TABLE).where(_TABLE.c.id <= through.id)).rowcount
    detail = {"removed": removed, "through": through.id, "hash": through.row_hash}
    append(connection, cipher, [Entry(CUT, now, detail=detail)], tail=tail)
    return removed


@dataclass(frozen=True)
class Verdict:
    ok: bool
    rows: int
    head: tuple[int, str]
    problem: str = ""


def verify(connection: Connection, cipher: FieldCipher, chunk: int = 5000) -> Verdict:
    """Walk the chain from its first kept row; the first break is named."""
    count = 0
    expected: tuple[int, str] | None = None
    anchor = _anchor(connection)
    for row in _rows(connection, chunk):
        row = dict(row._mapping)
        if expected is None:
            expected = (1, GENESIS) if anchor is None else anchor
        if (row["id"], row["prev_hash"]) != expected:
            return Verdict(False, count, expected, _gap(row["id"], expected[0]))
        if row_hash(cipher, row) != row["row_hash"]:
            return Verdict(False, count, expected, f"row {row['id']} was changed after it was written.")
        expected = (row["id"] + 1, row["row_hash"])
        count += 1
    head = (expected[0] - 1, expected[1]) if expected else (0, GENESIS)
    return Verdict(True, count, head)


def _gap(found: int, wanted: int) -> str:
    if found != wanted:
        return f"row {wanted} is missing (the next row kept is {found})."
    return f"row {found} does not follow the row before it (a row before it was changed or replaced)."


def _anchor(connection: Connection) -> tuple[int, str] | None:
    """Where the kept chain starts after retention cuts: the newest cut's
    last removed row. (An attacker cannot forge a cut row without the key.)"""
    cuts = connection.execute(select(_TABLE.c.detail).where(_TABLE.c.action == CUT)
                              .order_by(_TABLE.c.id.desc()).limit(1)).scalar()
    if cuts is None:
        return None
    detail = json.loads(cuts)
    return detail["through"] + 1, detail["hash"]


def _rows(connection: Connection, chunk: int) -> Iterable:
    after = -1
    while True:
        rows = connection.execute(select(_TABLE).where(_TABLE.c.id > after).order_by(_TABLE.c.id).limit(chunk)).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].id


def about(connection: Connection, subject: str) -> list:
    """Every row about one citizen, oldest first."""
    return connection.execute(select(_TABLE).where(_TABLE.c.subject == subject).order_by(_TABLE.c.id)).all()


def count(connection: Connection) -> int:
    return connection.execute(select(func.count()).select_from(_TABLE)).scalar_one()
