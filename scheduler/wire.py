"""A message as it goes on the wire, and the domain of an address.

Below the mail adapters and the store alike: the outbox keeps each message
as these bytes (``store``), composing and sending make them (``mail``,
``services``). Standard library only.
"""

from __future__ import annotations

import io
import re
from email.generator import Generator
from email.message import Message
from email.policy import compat32


def domain_of(address: str) -> str:
    """The part after "@" (Message-IDs and UIDs are made in it), or "localhost"."""
    return address.rpartition("@")[2] or "localhost"


def to_bytes(message: Message) -> bytes:
    """The message as sent: CRLF line ends, headers as built (not re-folded).

    A single part of plain text (every receipt) is written here directly, as
    the generator would write it (tested equal), at a fifth of the cost."""
    payload = message.get_payload()
    if message.is_multipart() or not isinstance(payload, str) or _SURROGATE.search(payload):
        return generated(message)
    head = "".join(f"{name}: {value}\r\n" for name, value in message.raw_items())
    return (head + "\r\n" + "\r\n".join(_NEWLINE.split(payload))).encode("ascii", "surrogateescape")


def generated(message: Message) -> bytes:
    """``to_bytes`` by ``email.generator``, for any message."""
    out = io.StringIO()
    _WireGenerator(out, mangle_from_=False, policy=_WIRE).flatten(message)
    return out.getvalue().encode("ascii", "surrogateescape")


class _WireGenerator(Generator):
    """Writes headers as they are: every value sparring sets is ASCII already
    (``_header``), so compat32's per-header ``Header`` round trip is waste."""

    def _write_headers(self, msg: Message) -> None:
        for name, value in msg.raw_items():
            self.write(f"{name}: {value}{self._NL}")
        self.write(self._NL)


_WIRE = compat32.clone(max_line_length=None, linesep="\r\n")
_NEWLINE = re.compile(r"\r\n|\r|\n")  # as email.generator splits lines
_SURROGATE = re.compile("[\udc80-\udcff]")  # undecodable bytes: the generator re-encodes those
