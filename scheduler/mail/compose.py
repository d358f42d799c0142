"""Build outgoing messages (receipts, alerts, agendas): pure functions.

Every message sparring writes carries ``Auto-Submitted`` (RFC 3834) so that
auto-responders do not answer it, and never repeats the subject of the mail
it answers: a caseworker's subject may hold a CPR number.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid


def domain_of(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


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
) -> EmailMessage:
    """A UTF-8 text mail (with an HTML alternative if given)."""
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((sender_name, sender))
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = make_msgid(domain=domain_of(sender))
    message["Auto-Submitted"] = auto
    message["X-Auto-Response-Suppress"] = "All"
    message["Content-Language"] = language
    if in_reply_to:
        reference = f"<{in_reply_to.strip('<>')}>"
        message["In-Reply-To"] = reference
        message["References"] = reference
    message.set_content(body, charset="utf-8", cte="quoted-printable")
    if html is not None:
        message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        del message["Content-Language"]  # add_alternative moved it into the text part
        message["Content-Language"] = language
    return message
