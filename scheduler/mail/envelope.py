"""What the envelope says beyond the headers (for transports that take a
whole MIME message and read its recipients from the headers)."""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.utils import getaddresses

from scheduler.ports import OutgoingMail


def hidden_recipients(mail: OutgoingMail) -> list[str]:
    """Envelope recipients the To/Cc headers do not name: they must go as Bcc,
    or they would get nothing."""
    headers = BytesHeaderParser().parsebytes(mail.message)
    named = {addr.lower() for _, addr in getaddresses(headers.get_all("To", []) + headers.get_all("Cc", []))}
    return [r for r in mail.recipients if r.lower() not in named]
