"""The IMAP wire format: pure helpers that need no connection.

Mailbox names in modified UTF-7 and quoted, compact UID sets, the FETCH
items asked for and the reading of imaplib's FETCH data (UID, INTERNALDATE,
the literal), the check of a command's status and of an untagged EXISTS.
Kept apart from ``imap`` (the connection, its commands and IDLE) so they
can be read and tested without a server; ``imap`` re-exports the public ones.
"""

from __future__ import annotations

import base64
import imaplib
import logging
import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from scheduler.ports import IncomingMail, PermanentError

log = logging.getLogger("scheduler.mail.imap")  # the source's logger: log lines read as before the split

FETCH_ITEMS = "(UID INTERNALDATE RFC822.SIZE BODY.PEEK[])"
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_INTERNALDATE = re.compile(
    rb'INTERNALDATE "\s?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"')
_UID = re.compile(rb"\bUID (\d+)")


def encode_mailbox(name: str) -> str:
    """RFC 3501 modified UTF-7: "Karantæne" -> "Karant&AOY-ne"."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            packed = base64.b64encode("".join(pending).encode("utf-16-be")).decode()
            out.append("&" + packed.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def mailbox_arg(name: str) -> str:
    """A folder name as an IMAP quoted string (imaplib does not quote)."""
    encoded = encode_mailbox(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def uid_set(uids: Sequence[int]) -> str:
    """Compact sequence set: [1, 2, 3, 7, 9, 10] -> "1:3,7,9:10"."""
    parts: list[str] = []
    ordered = sorted(set(uids))
    start = prev = ordered[0]
    for uid in ordered[1:] + [None]:
        if uid is not None and uid == prev + 1:
            prev = uid
            continue
        parts.append(str(start) if start == prev else f"{start}:{prev}")
        if uid is not None:
            start = prev = uid
    return ",".join(parts)


def parse_internaldate(text: bytes) -> datetime | None:
    """An aware datetime from an ``INTERNALDATE "dd-Mon-yyyy hh:mm:ss +zzzz"`` item."""
    match = _INTERNALDATE.search(text)
    if not match:
        return None
    day, month, year, hour, minute, second, sign, oh, om = match.groups()
    offset = timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == b"-" else 1)
    return datetime(int(year), _MONTHS[month.decode().title()], int(day), int(hour), int(minute),
                    int(second), tzinfo=timezone(offset))


def parse_fetch(data: list) -> list[IncomingMail]:
    """Mails from imaplib's FETCH data: (meta, literal) tuples, then b')'.

    UID may follow the literal, so the text after it is read too; an entry
    without UID or INTERNALDATE is skipped (it is fetched again next time).
    """
    mails = []
    for index, item in enumerate(data):
        if not isinstance(item, tuple):
            continue
        after = data[index + 1] if index + 1 < len(data) else b""
        meta = item[0] + b" " + (after if isinstance(after, bytes) else b"")
        uid, received = _UID.search(meta), parse_internaldate(meta)
        if uid is None or received is None:
            log.warning("imap fetch response without UID or INTERNALDATE skipped")
            continue
        mails.append(IncomingMail(ref=uid.group(1).decode(), raw=item[1], received_at=received))
    return mails


def uids_of(refs: Sequence[str]) -> list[int]:
    """The UID numbers behind ``IncomingMail.ref`` values."""
    try:
        return [int(ref) for ref in refs]
    except ValueError:
        raise PermanentError("An IMAP mail reference must be a UID number.") from None


def expect_ok(typ: str, command: str) -> None:
    """Raise imaplib's error unless a command's status is OK."""
    if typ != "OK":
        raise imaplib.IMAP4.error(f"{command} failed")


def is_exists(line: bytes) -> bool:
    """An untagged ``* n EXISTS`` response: the folder has new mail."""
    return re.match(rb"\* \d+ EXISTS", line) is not None
