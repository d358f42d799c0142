"""Build outgoing messages (receipts, alerts, agendas): pure functions.

Every message sparring writes carries ``Auto-Submitted`` (RFC 3834) so that
auto-responders do not answer it, and never repeats the subject of the mail
it answers: a caseworker's subject may hold a CPR number.

``text_mail`` is also the last guard before the wire: a header value never
carries a line break or other control character (a title with CR LF could
add a ``Bcc:``), and no subject, display name or body carries a CPR
number in any form (masked to ``DDMMYY-xxxx``), except the body of a
message explicitly allowed the full number (``full_cpr``: the agenda when
``agenda.cpr_display = "full"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
import binascii
import re
import secrets
import string
from email import base64mime
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.utils import format_datetime, formataddr

from scheduler.cpr import mask_cprs
from scheduler.planning.titles import has_control
from scheduler.wire import domain_of


def new_message_id(domain: str) -> str:
    """A fresh Message-ID of random letters: the audit trail keeps it as it is,
    so erasure finds the sent copy by it (``make_msgid``'s time and random
    digits can look like a CPR number, which the trail blanks out)."""
    return f"<{''.join(secrets.choice(string.ascii_lowercase) for _ in range(26))}@{domain}>"


def text_mail(
    *,
    sender: str,
    sender_name: str,
    to: Sequence[str],
    subject: str,
    body: str,
    sent_at: datetime,
    html: str | None = None,
    in_reply_to: str | None = None,
    auto: str = "auto-generated",
    language: str = "da",
    message_id: str | None = None,
    full_cpr: bool = False,
) -> Message:
    """A UTF-8 text mail (with an HTML alternative if given).

    Built with the compat32 classes: they write the same RFC 5322 as
    ``EmailMessage`` at a tenth of the cost, which matters when every mail
    taken in is answered.
    """
    _refuse_controls(sender, *to, message_id or "", auto, language)
    if not full_cpr:
        body, html = mask_cprs(body), mask_cprs(html) if html is not None else None
    text = _part(body, "plain")
    if html is None:
        message = text
    else:
        message = MIMEMultipart("alternative")
        message.attach(text)
        message.attach(_part(html, "html"))
    sender_name = _one_line(sender_name)
    message["From"] = formataddr((_header(sender_name), sender)) if sender_name else sender
    message["To"] = ", ".join(to)
    message["Subject"] = _header(_one_line(subject))
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id or new_message_id(domain_of(sender))
    message["Auto-Submitted"] = auto
    message["X-Auto-Response-Suppress"] = "All"
    message["Content-Language"] = language
    if in_reply_to and not has_control(in_reply_to):  # a hostile Message-ID is not repeated
        reference = f"<{in_reply_to.strip('<>')}>"
        message["In-Reply-To"] = reference
        message["References"] = reference
    return message


def _refuse_controls(*values: str) -> None:
    """Addresses and identifiers come validated; one with a control character
    is a bug upstream, refused here rather than written as a header."""
    if any(has_control(value) for value in values):
        raise ValueError("a mail address or identifier holds a control character")


def _one_line(value: str) -> str:
    """A display text fit for a header: control characters (CR, LF, ...)
    folded to one space each, CPR numbers masked."""
    if has_control(value):
        value = " ".join(_CONTROLS.split(value))
    return mask_cprs(value)


def _part(content: str, subtype: str) -> Message:
    """A UTF-8 quoted-printable text part with the headers ``MIMEText`` writes,
    set directly: its charset round trips cost more than the rest of a receipt."""
    part = Message()
    part["MIME-Version"] = "1.0"
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    # binascii's C encoder: the email package's own runs per character.
    text = content.replace("\r\n", "\n").encode("utf-8")
    part.set_payload(binascii.b2a_qp(text, istext=True).decode("ascii"))
    return part


def _header(value: str) -> str:
    """RFC 2047 encoded words (at most 75 characters each) for non-ASCII text,
    made once here so that writing the message need not fold anything."""
    if value.isascii():
        return value
    words, chunk = [], ""
    for char in value:
        if len((chunk + char).encode("utf-8")) > 45:
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return " ".join(base64mime.header_encode(w.encode("utf-8"), "utf-8") for w in words if w)


_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
