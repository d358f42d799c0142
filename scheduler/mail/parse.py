"""Incoming mail to a ``ParsedMail``: pure, no I/O, no clock.

Speed matters (the intake benchmark): a mail is parsed once with the
``compat32`` policy and its parts are decoded explicitly; ``policy.default``
re-parses Content-Type many times per mail, and so do ``Message``'s param
methods: each part's Content-Type and Content-Disposition are parsed once, by
``mimeparams``. The usual From and Date forms are read by ``headerforms``,
anything else by ``parseaddr``/``parsedate_to_datetime`` (equal results:
tests/test_parse_equivalence.py). A mail over ``max_bytes`` is not parsed at
all, only its header block is read.

What counts as automatic (never answered, filed as ignored), in this order:
a ``multipart/report`` or report part (read receipt for disposition
notifications, bounce otherwise), a MAILER-DAEMON/postmaster sender (bounce),
a ``text/calendar`` part with METHOD:REPLY (calendar reply), then RFC 3834
signals (auto-reply): ``Auto-Submitted`` other than "no"; ``Precedence``
bulk/junk/list/auto_reply; ``X-Autoreply``/``X-Autorespond``; a null
``Return-Path: <>``; and ``X-Auto-Response-Suppress`` *together with* an
auto-reply subject ("Automatisk svar:", "Autosvar:", "Out of Office",
"Automatic reply:"). Outlook sets ``X-Auto-Response-Suppress`` on ordinary
mails too, so that header alone is not enough, nor is the subject alone.

The item text is read from the body by the rules in ``itemtext``: quotes
and signatures are cut off first, so numbers in quoted mails never count.
The repr of a ``ParsedMail`` never shows CPR numbers or case text.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from email.header import decode_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from functools import lru_cache

from scheduler.mail.caseref import case_reference
from scheduler.mail.headerforms import parse_address, parse_date
from scheduler.mail.decisions import find_reference
from scheduler.mail.extra import find_reference as extra_reference
from scheduler.mail.html import html_to_text
from scheduler.mail.itemtext import mask_cprs, own_lines, read_body
from scheduler.mail.mimeparams import MimeHead
from scheduler.model import CalendarReply, MailKind, ParsedMail  # noqa: F401 - re-exported

_PARSER = BytesParser(policy=compat32)
_HEADER_PARSER = BytesHeaderParser(policy=compat32)
_MAX_PARTS = 200  # more parts than any real mail: the rest is not looked at
_MAX_DEPTH = 20


# -- headers -------------------------------------------------------------

_FOLD = re.compile(r"\r?\n(?=[ \t])")
_AUTO_SUBJECT = re.compile(
    r"^\s*(automatisk\s+svar|autosvar|out\s+of\s+(the\s+)?office|automatic\s+reply|autoreply)\b",
    re.IGNORECASE,
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_BULK = {"bulk", "junk", "list", "auto_reply"}
_DAEMONS = {"mailer-daemon", "postmaster"}
_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
_PRINTABLE_ID = re.compile(r"[!-;=?-~]{1,250}")  # printable ASCII without space and <>
# Header values longer than this are not decoded: the stdlib's decode_header
# takes time in the square of the number of encoded words. A longer Subject
# makes the mail unreadable, a longer From leaves it without sender.
MAX_HEADER = 8_192


def _unbytes(data: bytes, charset: str | None = None) -> str:
    """Text from bytes in any (or a wrong, or no) charset; never raises."""
    for candidate in _charsets(charset):
        try:
            text = data.decode(candidate)
        except (UnicodeDecodeError, LookupError, ValueError, TypeError):
            continue
        if not _SURROGATE.search(text):  # utf-7 or unicode_escape can yield lone surrogates
            return text
    return data.decode("cp1252", "replace")


def _charsets(declared: str | None) -> list[str]:
    name = (declared or "").strip().strip('"').lower()
    # As browsers do: Latin-1 and ASCII labels mean windows-1252, whose
    # extra characters (€, curly quotes) Outlook sends under those labels.
    if name in ("", "us-ascii", "ascii", "unknown-8bit", "x-unknown"):
        return ["utf-8", "cp1252"]
    if name in ("iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "windows-1252", "cp1252"):
        return ["cp1252", "latin-1"]
    return [name, "utf-8", "cp1252"] if _is_charset(name) else ["utf-8", "cp1252"]


@lru_cache(maxsize=64)
def _is_charset(name: str) -> bool:
    """A text encoding a mail may declare: not one of Python's codecs that
    interpret their input (``unicode_escape`` turns backslashes into any
    character) or are no charset at all (``idna``, ``punycode``)."""
    try:
        codec = codecs.lookup(name).name
    except (LookupError, ValueError, TypeError):  # ValueError: a NUL byte in the name
        return False
    return codec not in _NOT_CHARSETS


_NOT_CHARSETS = {"unicode-escape", "raw-unicode-escape", "unicode_escape", "raw_unicode_escape",
                 "idna", "punycode", "undefined"}


def _raw_text(value: str) -> str:
    """A raw header value without folds or undecodable-byte surrogates."""
    value = _FOLD.sub("", value)
    if _SURROGATE.search(value):
        try:
            value = _unbytes(value.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:  # not an escaped byte: drop it
            value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _decoded(value: str) -> str:
    """A header value with RFC 2047 encoded words decoded; cut at
    ``MAX_HEADER`` characters first, for decode_header's sake."""
    value = _raw_text(value[:MAX_HEADER])
    if "=?" not in value:
        return value.strip()
    try:
        chunks = decode_header(value)
    except Exception:  # a malformed encoded word: keep the raw text
        return value.strip()
    text = "".join(c if isinstance(c, str) else _unbytes(c, cs) for c, cs in chunks)
    return " ".join(text.split())


_REPEATED_FROM = "\0from"  # a key no header name can be: a second From header was seen


def _headers(msg: Message) -> dict[str, str]:
    """The first value of each header by lower-cased name."""
    headers: dict[str, str] = {}
    for name, value in msg.raw_items():
        key = name.lower()
        if key in headers:
            if key == "from":
                headers[_REPEATED_FROM] = ""
            continue
        headers[key] = value if isinstance(value, str) else str(value)
    return headers


def _message_id(headers: dict[str, str], raw: bytes) -> str:
    """The Message-ID without <>. It goes back out in In-Reply-To, so one
    that is not printable ASCII (or absurdly long) is replaced by a hash of
    itself: copies of the same mail still share it."""
    value = _raw_text(headers.get("message-id", "")[:MAX_HEADER * 4]).strip()
    found = _MESSAGE_ID.search(value)
    mid = found.group(1) if found else value.strip("<> \t")
    if not mid:
        return "sha256:" + hashlib.sha256(raw).hexdigest()
    if not _PRINTABLE_ID.fullmatch(mid):
        return "sha256:" + hashlib.sha256(mid.encode("utf-8", "surrogateescape")).hexdigest()
    return mid


def _sender(headers: dict[str, str]) -> tuple[str, str]:
    """(address, display name) of the one address in From (or Sender); ("", "")
    unless there is exactly one From header holding exactly one valid address."""
    if _REPEATED_FROM in headers:
        return "", ""
    raw = headers.get("from") or headers.get("sender") or ""
    if len(raw) > MAX_HEADER:
        return "", ""
    name, address = parse_address(_raw_text(raw))
    if not address:
        return "", ""
    return address.lower(), _decoded(name).strip('" ')


def _date(headers: dict[str, str]) -> datetime | None:
    """The Date header, or None if it is not a date that can be shown in any zone."""
    value = _raw_text(headers.get("date", "")[:MAX_HEADER])
    try:
        moment = parse_date(value)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        moment.astimezone(timezone.utc)  # OverflowError at the ends of the calendar (year 9999 -1200)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment


def _auto_reason(headers: dict[str, str], subject: str) -> str | None:
    auto = headers.get("auto-submitted", "").strip().split(";")[0].strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto[:40]}"
    precedence = headers.get("precedence", "").strip().lower()
    if precedence in _BULK:
        return f"Precedence: {precedence}"
    for name in ("x-autoreply", "x-autorespond"):
        if name in headers:
            return name.title()
    if "return-path" in headers and headers["return-path"].strip() == "<>":
        return "Return-Path: <>"
    if "x-auto-response-suppress" in headers and _AUTO_SUBJECT.search(subject):
        return "X-Auto-Response-Suppress with an auto-reply subject"
    return None


def _daemon(sender: str) -> bool:
    return sender.partition("@")[0] in _DAEMONS


# -- parts ---------------------------------------------------------------


@dataclass
class _Parts:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)
    calendars: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)  # content types of report parts
    count: int = 0


def _collect(part: Message, acc: _Parts, depth: int = 0, head: MimeHead | None = None) -> None:
    acc.count += 1
    if acc.count > _MAX_PARTS or depth > _MAX_DEPTH:
        return
    head = head or MimeHead(part)
    if head.ctype.startswith("message/"):
        _collect_message(head, acc)
    elif part.is_multipart():
        for sub in part.get_payload():
            if isinstance(sub, Message):
                _collect(sub, acc, depth + 1)
    else:
        _collect_leaf(part, head, acc)


def _collect_message(head: MimeHead, acc: _Parts) -> None:
    if head.ctype in ("message/delivery-status", "message/disposition-notification"):
        acc.reports.append(head.ctype)
    else:  # an attached mail: never read, only named
        acc.attachments.append(_filename(head) or head.ctype)


def _collect_leaf(part: Message, head: MimeHead, acc: _Parts) -> None:
    name, ctype = _filename(head), head.ctype
    if ctype in ("text/calendar", "application/ics"):
        text = _payload_text(part, head)
        if _METHOD_REPLY.search(text):
            acc.calendars.append(text)
        elif name:
            acc.attachments.append(name)
    elif ctype in ("text/plain", "text/html") and not name and head.disposition != "attachment":
        (acc.plain if ctype == "text/plain" else acc.html).append(_payload_text(part, head))
    elif ctype.startswith("image/") and head.content_id and head.disposition != "attachment":
        return  # an inline picture of an HTML body (a logo in a signature)
    else:
        acc.attachments.append(name or ctype)


def _filename(head: MimeHead) -> str:
    try:
        name = head.filename() or head.param("name") or ""
    except Exception:  # malformed RFC 2231 parameters
        return ""
    if not isinstance(name, str):  # an RFC 2231 tuple left undecoded
        name = str(name[-1]) if name else ""
    # The receipt names dropped files: a CPR number in a file name is masked.
    return mask_cprs(_decoded(name))[:200] if name else ""


def _payload_text(part: Message, head: MimeHead) -> str:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if not isinstance(data, bytes):
        return ""
    try:
        charset = head.charset()
    except Exception:
        charset = None
    text = _unbytes(data, charset)
    return text.replace("\r\n", "\n").replace("\r", "\n")


_METHOD_REPLY = re.compile(r"^METHOD:\s*REPLY\b", re.IGNORECASE | re.MULTILINE)
_MAILTO = re.compile(r"^mailto:", re.IGNORECASE)


def _calendar_reply(texts: list[str]) -> CalendarReply | None:
    from icalendar import Calendar  # imported here: most mails never need it

    for text in texts:
        try:
            events = Calendar.from_ical(text).walk("VEVENT")
        except Exception:  # icalendar raises ValueError and more on bad input
            continue
        for event in events:
            try:
                reply = _reply_of(event)
            except Exception:  # a broken property (RECURRENCE-ID:notadate) raises on access
                continue
            if reply is not None:
                return reply
    return None


def _reply_of(event) -> CalendarReply | None:
    attendees = event.get("ATTENDEE")
    if attendees is None:
        return None
    attendee = attendees[0] if isinstance(attendees, list) else attendees
    address = _MAILTO.sub("", str(attendee)).strip().lower()
    partstat = str(getattr(attendee, "params", {}).get("PARTSTAT", "NEEDS-ACTION")).upper()
    recurrence = event.get("RECURRENCE-ID")
    recurrence_id = getattr(recurrence, "dt", None) if recurrence is not None else None
    if not isinstance(recurrence_id, (date, datetime)):
        recurrence_id = None
    try:
        sequence = int(event.get("SEQUENCE", 0))
    except (TypeError, ValueError):
        sequence = 0
    return CalendarReply(
        uid=str(event.get("UID", "")),
        attendee=address,
        partstat=partstat,
        recurrence_id=recurrence_id,
        sequence=sequence,
    )


# -- the whole mail --------------------------------------------------------

_REQUEST = re.compile(r"\b(netværksmøde|netvaerksmoede|koordineringsmøde|koordineringsmoede)\b", re.IGNORECASE)


def parse_mail(raw: bytes, max_bytes: int = 1_000_000) -> ParsedMail:
    """Parse and classify one mail; never raises. A mail that trips anything
    below is read again for its headers alone and becomes UNREADABLE (or,
    if even that fails, an UNREADABLE mail without sender: nobody to answer)."""
    try:
        return _parse(raw, max_bytes)
    except Exception:
        pass
    try:
        return _header_only(raw, MailKind.UNREADABLE)
    except Exception:
        return ParsedMail(message_id="sha256:" + hashlib.sha256(raw).hexdigest(), sender="",
                          kind=MailKind.UNREADABLE, size=len(raw))


def _parse(raw: bytes, max_bytes: int) -> ParsedMail:
    if len(raw) > max_bytes:
        return _header_only(raw, MailKind.TOO_LARGE)
    try:
        msg = _PARSER.parsebytes(raw)
    except Exception:  # e.g. RFC 2231 boundary parameters the stdlib trips over (TypeError)
        return _header_only(raw, MailKind.UNREADABLE)
    headers = _headers(msg)
    common = _common(headers, raw)
    parts = _Parts()
    root = MimeHead(msg)
    _collect(msg, parts, head=root)
    attachments = tuple(parts.attachments)
    automatic = _automatic(root, headers, common, parts)
    if automatic is not None:
        kind, reason, reply = automatic
        return ParsedMail(**common, kind=kind, auto_reason=reason, calendar_reply=reply,
                          attachments=attachments)
    if _long_subject(headers):
        return ParsedMail(**common, kind=MailKind.HEADER_TOO_LONG, attachments=attachments)
    text = _body_text(parts)
    if case_reference(common["subject"]):  # before the request: "Re: Koordineringsmøde [K-7F3Q]"
        return ParsedMail(**common, kind=MailKind.CASE_MAIL, request_lines=tuple(own_lines(text)),
                          attachments=attachments)
    if extra_reference(common["subject"]):  # a reply to a backlog warning
        return ParsedMail(**common, kind=MailKind.EXTRA_REPLY, request_lines=tuple(own_lines(text)),
                          attachments=attachments)
    if find_reference(common["subject"]):  # before requests: the reply may name a meeting
        return ParsedMail(**common, kind=MailKind.DECISION, request_lines=tuple(own_lines(text)),
                          attachments=attachments)
    request = _REQUEST.search(common["subject"])
    if request:
        return ParsedMail(**common, kind=MailKind.BOOKING_REQUEST, request_lines=tuple(own_lines(text)),
                          attachments=attachments)
    body = read_body(common["subject"], text)
    return ParsedMail(
        **common,
        kind=MailKind.WITHDRAW if body.withdraw else MailKind.ITEM,
        acute=body.acute,
        cprs=body.cprs,
        bad_cpr=body.bad_cpr,
        health=body.health,
        social=body.social,
        attachments=attachments,
    )


def _long_subject(headers: dict[str, str]) -> bool:
    return len(headers.get("subject", "")) > MAX_HEADER


def _common(headers: dict[str, str], raw: bytes) -> dict:
    sender, name = _sender(headers)
    return {
        "message_id": _message_id(headers, raw),
        "sender": sender,
        "sender_name": name,
        "subject": "" if _long_subject(headers) else _decoded(headers.get("subject", "")),
        "date_header": _date(headers),
        "size": len(raw),
    }


def _automatic(root: MimeHead, headers: dict[str, str], common: dict, parts: _Parts):
    """(kind, reason, calendar reply) for a mail nobody should answer, else None."""
    ctype = root.ctype
    report = (root.param("report-type") or "") if ctype == "multipart/report" else ""
    if not isinstance(report, str):
        report = ""
    if report.lower() == "disposition-notification" or "message/disposition-notification" in parts.reports:
        return MailKind.READ_RECEIPT, "disposition notification", None
    if ctype == "multipart/report" or parts.reports:
        return MailKind.BOUNCE, "multipart/report", None
    if _daemon(common["sender"]):
        return MailKind.BOUNCE, "sender " + common["sender"].partition("@")[0], None
    if parts.calendars:
        return MailKind.CALENDAR_REPLY, "text/calendar METHOD:REPLY", _calendar_reply(parts.calendars)
    reason = _auto_reason(headers, common["subject"])
    return (MailKind.AUTO_REPLY, reason, None) if reason else None


def _body_text(parts: _Parts) -> str:
    plain = "\n".join(parts.plain)
    if plain.strip() or not parts.html:
        return plain
    return "\n".join(html_to_text(markup) for markup in parts.html)


def _header_only(raw: bytes, kind: MailKind) -> ParsedMail:
    """A mail too large or too broken to parse: only the header block is
    read, so that an automatic mail is still recognised (and not answered)."""
    end = min((i for i in (raw.find(b"\r\n\r\n", 0, 262_144), raw.find(b"\n\n", 0, 262_144)) if i >= 0),
              default=min(len(raw), 262_144))
    msg = _HEADER_PARSER.parsebytes(raw[:end])
    headers = _headers(msg)
    common = _common(headers, raw)
    if msg.get_content_type() == "multipart/report" or _daemon(common["sender"]):
        return ParsedMail(**common, kind=MailKind.BOUNCE, auto_reason="multipart/report or daemon")
    reason = _auto_reason(headers, common["subject"])
    if reason:
        return ParsedMail(**common, kind=MailKind.AUTO_REPLY, auto_reason=reason)
    return ParsedMail(**common, kind=MailKind.HEADER_TOO_LONG if _long_subject(headers) else kind)
