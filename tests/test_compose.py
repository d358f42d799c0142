"""Outgoing mail on the wire: headers as built, UTF-8 quoted-printable bodies."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.mail.compose import text_mail
from scheduler.wire import generated, to_bytes

BODY = "Kære Karen\n\nLinje med æøå og = tegn " + "x" * 90 + "\r\nSidste linje"


def build(html: str | None = None) -> bytes:
    return to_bytes(text_mail(
        sender="sparring@kommune.example", sender_name="Sparringsforum Ø", to=["karen@kommune.example"],
        subject="Kvittering: æøå", body=BODY, sent_at=datetime(2027, 1, 4, 8, tzinfo=timezone.utc),
        html=html, in_reply_to="<abc@kommune.example>",
    ))


def test_a_text_mail_is_crlf_quoted_printable_and_decodes_to_the_body():
    wire = build()
    head, _, body = wire.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[:3] == [
        b"MIME-Version: 1.0", b'Content-Type: text/plain; charset="utf-8"',
        b"Content-Transfer-Encoding: quoted-printable"]
    assert b"\n" not in wire.replace(b"\r\n", b"") and all(len(line) <= 78 for line in body.split(b"\r\n"))
    message = email.message_from_bytes(wire, policy=email.policy.default)
    assert message["Subject"] == "Kvittering: æøå"
    assert message["In-Reply-To"] == "<abc@kommune.example>" and message["Auto-Submitted"] == "auto-generated"
    assert message.get_content().replace("\r\n", "\n") == BODY.replace("\r\n", "\n")


def test_an_html_alternative_has_parts_of_the_same_form():
    message = email.message_from_bytes(build("<p>Hej æøå</p>"), policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.get_payload()
    assert plain["Content-Transfer-Encoding"] == html["Content-Transfer-Encoding"] == "quoted-printable"
    assert html.get_content_type() == "text/html" and html.get_content().strip() == "<p>Hej æøå</p>"
    assert plain.get_content_charset() == "utf-8"


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(), st.text(max_size=40), st.booleans())
def test_a_single_part_is_written_as_the_generator_writes_it(body, subject, name, reply):
    """``to_bytes`` writes a one-part mail itself: byte for byte the generator's output."""
    message = text_mail(
        sender="sparring@kommune.example", sender_name=name, to=["karen@kommune.example"],
        subject=subject, body=body, sent_at=datetime(2027, 1, 4, 8, tzinfo=timezone.utc),
        in_reply_to="<abc@kommune.example>" if reply else None,
    )
    assert to_bytes(message) == generated(message)
    message.set_payload("line one\rline two\r\n\r\nlast\n")  # bare CR and LF as the generator splits them
    assert to_bytes(message) == generated(message)


def _headers(wire: bytes) -> list[bytes]:
    return wire.partition(b"\r\n\r\n")[0].split(b"\r\n")


def test_no_header_value_carries_a_line_break_onto_the_wire():
    """A title with CR LF (``book --title $'Hej\\r\\nBcc: evil@x.org'``) would start a header of its own."""
    for hostile in ("Hej\r\nBcc: evil@x.org", "Hej\nBcc: evil@x.org", "Hej\rBcc: evil@x.org",
                    "Hæj\r\nBcc: evil@x.org", "Hej\u2028Bcc: evil@x.org", "Hej\x00\x0bBcc: evil@x.org"):
        wire = to_bytes(text_mail(
            sender="sparring@kommune.example", sender_name=hostile, to=["karen@kommune.example"],
            subject=hostile, body="Hej", sent_at=datetime(2027, 1, 4, 8, tzinfo=timezone.utc)))
        lines = _headers(wire)
        assert not any(line.lower().startswith(b"bcc") for line in lines)
        assert all(not line[:1].isspace() for line in lines), "nothing folded in: every line is one header"
        assert all(32 <= byte < 127 for line in lines for byte in line)
        message = email.message_from_bytes(wire, policy=email.policy.default)
        assert message["Bcc"] is None and "Bcc: evil@x.org" in str(message["Subject"])


def test_an_address_with_a_line_break_is_refused():
    import pytest

    with pytest.raises(ValueError):
        text_mail(sender="sparring@kommune.example", sender_name="", to=["a@k.example\r\nBcc: evil@x.org"],
                  subject="Hej", body="Hej", sent_at=datetime(2027, 1, 4, 8, tzinfo=timezone.utc))
