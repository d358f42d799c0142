"""Parsing incoming mails: classification and item text, on fictitious fixtures."""

from __future__ import annotations

import base64
import hashlib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.mail.html import html_to_text
from scheduler.mail.parse import CalendarReply, MailKind, ParsedMail, parse_mail

FIXTURES = Path(__file__).parent / "fixtures" / "mail"


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.eml").read_bytes()


def parsed(name: str) -> ParsedMail:
    return parse_mail(load(name))


# name: (kind, cprs, health, social)
ITEMS = {
    "01-item-plain": (MailKind.ITEM, ("1205024127",),
                      ("Angst og søvnproblemer, i behandling hos egen læge.",),
                      ("Bor midlertidigt hos en ven, gæld.",)),
    "02-item-outlook-html": (MailKind.ITEM, ("0103851093",),
                             ("Rygskade efter arbejdsulykke, kroniske smerter.",),
                             ("Skilsmisse i 2026, økonomiske problemer, ingen bolig pt.",)),
    "03-item-latin1-qp": (MailKind.ITEM, ("1506972208",), ("Depression, ophørt med medicin.",),
                          ("Ensomhed, droppet ud af uddannelse.",)),
    "04-reply-outlook-quote": (MailKind.ITEM, ("2304783317",), ("Alkoholmisbrug, i ambulant behandling.",),
                               ("Netværk mangler, udsat for vold.",)),
    "05-cpr-in-subject": (MailKind.ITEM, ("2001994321",), ("ADHD, ikke medicineret.",),
                          ("Konflikter i familien.",)),
    "06-cpr-invalid-date": (MailKind.ITEM, ("3102901234",), ("Stress.",), ("Ingen bolig.",)),
    "07-too-many-lines": (MailKind.ITEM, ("0103851093",), ("Linje 1", "Linje 2", "Linje 3", "Linje 4"),
                          ("Linje 5", "Linje 6", "Linje 7", "Linje 8")),
    "11-base64-encoded-subject": (MailKind.ITEM, ("0505601017",), ("Diabetes, dårligt reguleret.",),
                                  ("Ludomani, gæld til SKAT.",)),
    "13-withdraw": (MailKind.WITHDRAW, ("1205024127",), (), ()),
    "14-under-15": (MailKind.ITEM, ("0309144005",), ("Skolevægring.",), ("Familiebehandling.",)),
    "17-two-cprs": (MailKind.ITEM, ("2304783317", "0103851093"), ("Misbrug.", "Smerter."), ("Hjemløs.", "Gæld.")),
    "18-alternative": (MailKind.ITEM, ("1506972208",), ("Spiseforstyrrelse.",), ("Ophold på forsorgshjem.",)),
    "19-cp1252-html-table": (MailKind.ITEM, ("1205024127",), ("“Angst”, søvnproblemer – egen læge",),
                             ("Gæld på 30.000 € Sofasurfer",)),
    "23-broken-charset": (MailKind.ITEM, ("2304783317",), ("Ryg – smerter.",), ("Gæld € 200.",)),
    "23b-unknown-charset": (MailKind.ITEM, ("2304783317",), ("Søvn.",), ("Bolig.",)),
    "24-reply-gmail-quote": (MailKind.ITEM, ("1205024127",), ("Angst.",), ("Ensom.", "Ny linje om netværk.")),
    "26-suppress-ordinary": (MailKind.ITEM, ("2304783317",), ("Smerter.",), ("Gæld.",)),
    "29-no-text": (MailKind.ITEM, ("1205024127",), (), ()),
    "30-attached-mail": (MailKind.ITEM, ("2304783317",), ("Smerter.",), ()),
    "31-original-message": (MailKind.ITEM, ("1205024127",), ("Angst",), ("Gæld", "og ingen bolig")),
    "34-withdraw-body": (MailKind.WITHDRAW, ("1205024127",), (), ()),
    "35-html-reply-inline-image": (MailKind.ITEM, ("2304783317",), ("Smerter.",), ("Gæld.",)),
}


@pytest.mark.parametrize("name", sorted(ITEMS))
def test_item_text_and_cprs(name: str) -> None:
    kind, cprs, health, social = ITEMS[name]
    mail = parsed(name)
    assert (mail.kind, mail.cprs, mail.health, mail.social) == (kind, cprs, health, social)
    assert mail.message_id == f"f{name.split('-')[0]}@mail.kommune.example"


@pytest.mark.parametrize(
    ("name", "kind", "reason"),
    [
        ("12-out-of-office", MailKind.AUTO_REPLY, "Auto-Submitted: auto-replied"),
        ("25-ooo-suppress-subject", MailKind.AUTO_REPLY, "X-Auto-Response-Suppress with an auto-reply subject"),
        ("32-precedence-bulk", MailKind.AUTO_REPLY, "Precedence: bulk"),
        ("16-bounce", MailKind.BOUNCE, "multipart/report"),
        ("33-postmaster", MailKind.BOUNCE, "sender postmaster"),
        ("21-read-receipt", MailKind.READ_RECEIPT, "disposition notification"),
        ("20-calendar-reply", MailKind.CALENDAR_REPLY, "text/calendar METHOD:REPLY"),
    ],
)
def test_automatic_mails_are_recognised_and_not_read(name: str, kind: MailKind, reason: str) -> None:
    mail = parsed(name)
    assert (mail.kind, mail.auto_reason) == (kind, reason)
    assert mail.cprs == () and mail.health == () and mail.social == ()


def test_headers_are_decoded() -> None:
    mail = parsed("11-base64-encoded-subject")
    assert mail.subject == "Sparring – borger med gæld"
    assert (mail.sender, mail.sender_name) == ("bo.eksempel@kommune.example", "Bo Eksempel")
    assert mail.date_header == datetime(2027, 1, 5, 14, 0, tzinfo=timezone(timedelta(hours=1)))
    assert parsed("13-withdraw").subject == "Træk tilbage: sparring"
    assert parsed("09-outside-sender").sender == "someone@freemail.example"


def test_acute_is_the_whole_word_in_the_subject() -> None:
    assert parsed("08-acute").acute is True
    assert parsed("34-withdraw-body").acute is False  # "akutteam"
    assert parsed("01-item-plain").acute is False


def test_attachments_are_named_not_read() -> None:
    assert parsed("15-attachment").attachments == ("lægeerklæring.docx", "bilag2.pdf")
    assert parsed("15-attachment").cprs == ("2304783317",)
    assert parsed("30-attached-mail").attachments == ("tidligere.eml",)
    assert parsed("35-html-reply-inline-image").attachments == ()  # the signature logo is not a file
    assert parsed("01-item-plain").attachments == ()


def test_cpr_in_an_attachment_name_is_masked() -> None:
    raw = ("From: a@k.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           "Content-Type: text/plain\r\n\r\nCPR: 120502-4127\r\n--b\r\nContent-Type: application/pdf\r\n"
           'Content-Disposition: attachment; filename="erklaering 1205024127.pdf"\r\n\r\nx\r\n--b--\r\n').encode()
    assert parse_mail(raw).attachments == ("erklaering 120502-xxxx.pdf",)


def test_calendar_reply_details() -> None:
    reply = parsed("20-calendar-reply").calendar_reply
    assert isinstance(reply, CalendarReply)
    assert (reply.uid, reply.attendee, reply.partstat, reply.sequence) == (
        "slot-42@sparring.kommune.example", "bo.eksempel@kommune.example", "ACCEPTED", 2)
    assert reply.recurrence_id is not None
    assert reply.recurrence_id.replace(tzinfo=None) == datetime(2027, 1, 7, 13, 10)


def test_missing_message_id_is_the_hash_of_the_mail() -> None:
    raw = load("22-no-message-id")
    assert parse_mail(raw).message_id == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_labelled_malformed_cpr_is_flagged() -> None:
    mail = parsed("27-cpr-bad-format")
    assert mail.cprs == () and mail.bad_cpr is True
    assert parsed("01-item-plain").bad_cpr is False


def test_repr_hides_personal_data() -> None:
    text = repr(parsed("05-cpr-in-subject"))
    assert "2001994321" not in text and "ADHD" not in text


def test_too_large_mail_is_not_parsed() -> None:
    raw = load("01-item-plain")
    mail = parse_mail(raw, max_bytes=len(raw) - 1)
    assert mail.kind is MailKind.TOO_LARGE
    assert (mail.message_id, mail.sender, mail.size) == ("f01@mail.kommune.example", "anne.testesen@kommune.example", len(raw))
    assert mail.cprs == () and mail.health == ()
    assert parse_mail(raw, max_bytes=len(raw)).kind is MailKind.ITEM


def test_too_large_automatic_mail_stays_automatic() -> None:
    raw = load("12-out-of-office")
    assert parse_mail(raw, max_bytes=100).kind is MailKind.AUTO_REPLY
    assert parse_mail(load("16-bounce"), max_bytes=100).kind is MailKind.BOUNCE


BROKEN_MIME = (  # RFC 2231 boundary parameters the stdlib's parser raises TypeError on
    b"From: Anne <anne.testesen@kommune.example>\r\nSubject: Sparring\r\nMessage-ID: <broken@x>\r\n"
    b"Content-Type: multipart/mixed; boundary*=x; boundary*0=y\r\n\r\n--x\r\n\r\nCPR: 120502-4127\r\n"
)


def test_mime_the_stdlib_gives_up_on_is_unreadable_not_an_error() -> None:
    mail = parse_mail(BROKEN_MIME)
    assert (mail.kind, mail.message_id, mail.sender) == (MailKind.UNREADABLE, "broken@x", "anne.testesen@kommune.example")
    assert mail.cprs == ()
    auto = BROKEN_MIME.replace(b"Subject: Sparring", b"Auto-Submitted: auto-replied\r\nSubject: Sparring")
    assert parse_mail(auto).kind is MailKind.AUTO_REPLY, "still never answered"


def _plain(body: str, subject: str = "Sparring", headers: str = "") -> bytes:
    return (
        f"From: a@kommune.example\r\nSubject: {subject}\r\nMessage-ID: <x@y>\r\n{headers}"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body.replace("\n", "\r\n")
    ).encode()


@pytest.mark.parametrize(
    "label",
    ["CPR", "CPR:", "cpr-nr.:", "CPR nr", "Cpr nummer", "CPR-nummer:", "CPR -", "cpr.nr.", ""],
)
@pytest.mark.parametrize("number", ["120502-4127", "120502 4127", "1205024127"])
def test_cpr_label_and_number_forms(label: str, number: str) -> None:
    mail = parse_mail(_plain(f"{label} {number}\nHelbred: x\n"))
    assert mail.cprs == ("1205024127",)
    assert mail.health == ("x",)


@pytest.mark.parametrize(
    ("line", "section"),
    [
        ("Helbred: a", "health"), ("HELBRED a", "health"), ("helbredsforhold - a", "health"),
        ("Helbredsmæssige forhold: a", "health"), ("Sociale udfordringer: a", "social"),
        ("sociale forhold a", "social"), ("Social: a", "social"), ("- Social - a", "social"),
    ],
)
def test_section_labels(line: str, section: str) -> None:
    mail = parse_mail(_plain(f"CPR: 120502-4127\n{line}\n"))
    assert getattr(mail, section) == ("a",)


def test_section_ends_at_blank_line_label_or_cpr_line() -> None:
    body = ("Helbred:\nangst\nsøvn\n\nfritekst uden label\nSocialt har han det svært\n"
            "Social: gæld\nCPR: 120502-4127\nefter cpr\n")
    mail = parse_mail(_plain(body))
    assert mail.health == ("angst", "søvn")
    assert mail.social == ("gæld",)


def test_unlabelled_numbers_need_a_date_shape() -> None:
    mail = parse_mail(_plain("Sagsnr. 1234567890 og tlf. 89 59 00 00\nHelbred: x\n"))
    assert mail.cprs == ()


def test_signature_and_quote_markers() -> None:
    for marker in ["Med venlig hilsen", "mvh Bo", "Best regards", "Kind regards,", "--", "> citat",
                   "-----Oprindelig meddelelse-----", "On Mon, 4 Jan 2027 at 10:00, Bo <b@k.example> wrote:"]:
        mail = parse_mail(_plain(f"Helbred: x\n{marker}\nCPR: 010385-1093\n", subject="Sparring 120502-4127"))
        assert mail.cprs == ("1205024127",), marker
        assert mail.health == ("x",), marker


def test_danish_sentence_starting_with_den_is_not_a_quote() -> None:
    mail = parse_mail(_plain("Helbred: x\nDen praktiserende læge skrev følgende:\nCPR: 120502-4127\n"))
    assert mail.cprs == ("1205024127",)


def test_duplicates_collapse_in_order() -> None:
    mail = parse_mail(_plain("CPR: 120502-4127\nCPR 1205024127\n", subject="AKUT 120502-4127"))
    assert mail.cprs == ("1205024127",) and mail.acute


def test_withdraw_words() -> None:
    assert parse_mail(_plain("CPR: 120502-4127", subject="TRÆK TILBAGE")).kind is MailKind.WITHDRAW
    assert parse_mail(_plain("CPR: 120502-4127", subject="Tilbagetræk punkt")).kind is MailKind.WITHDRAW
    assert parse_mail(_plain("Træk venligst tilbage\nCPR: 120502-4127")).kind is MailKind.ITEM


def test_headers_alone_do_not_make_an_ordinary_mail_automatic() -> None:
    mail = parse_mail(_plain("CPR: 120502-4127\nHelbred: x\n", headers="Auto-Submitted: no\r\n"
                             "Disposition-Notification-To: a@kommune.example\r\n"))
    assert mail.kind is MailKind.ITEM
    assert parse_mail(_plain("x", subject="Autosvar: ferie")).kind is MailKind.ITEM
    assert parse_mail(_plain("x", headers="X-Autoreply: yes\r\n")).kind is MailKind.AUTO_REPLY
    assert parse_mail(_plain("x", headers="Return-Path: <>\r\n")).kind is MailKind.AUTO_REPLY


def test_alternative_with_empty_plain_part_falls_back_to_html() -> None:
    html = base64.encodebytes("<p>CPR: 120502-4127</p><p>Helbred: fra html</p>".encode()).decode()
    raw = ("From: a@k.example\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: text/plain\r\n\r\n\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n"
           f"Content-Transfer-Encoding: base64\r\n\r\n{html}\r\n--b--\r\n").encode()
    assert parse_mail(raw).health == ("fra html",)


def test_html_to_text_layout() -> None:
    markup = ("<html><head><style>p {}</style><title>t</title></head><body>\n<div><p>a <b>b</b></p>\n"
              "<p>&nbsp;</p><p>c<br>d</p><table><tr><td>e</td><td><p>f</p><p>g</p></td></tr></table>"
              "<blockquote><p>citeret</p></blockquote></div></body></html>")
    assert html_to_text(markup) == "a b\n\nc\nd\ne f g\n>"
    assert html_to_text("") == "" and html_to_text("<<<>>>") in ("", "<<<>>>")


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=3000))
def test_parse_never_raises_on_bytes(raw: bytes) -> None:
    assert isinstance(parse_mail(raw), ParsedMail)


_ENCODINGS = ["7bit", "8bit", "quoted-printable", "base64"]


@settings(max_examples=150, deadline=None)
@given(body=st.text(max_size=600), subject=st.text(max_size=80),
       ctype=st.sampled_from(["text/plain", "text/html", "text/calendar", "application/pdf"]),
       charset=st.sampled_from(["utf-8", "iso-8859-1", "cp1252", "x-bogus", "base64", "utf-7", "unicode_escape", ""]),
       cte=st.sampled_from(_ENCODINGS))
def test_parse_never_raises_on_arbitrary_text(body: str, subject: str, ctype: str, charset: str, cte: str) -> None:
    data = body.encode("utf-8", "surrogatepass")
    if cte == "base64":
        data = base64.encodebytes(data)
    head = (f"From: {subject} <a@k.example>\r\nSubject: {subject}\r\nDate: {subject}\r\n"
            f"Content-Type: {ctype}; charset=\"{charset}\"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n")
    mail = parse_mail(head.encode("utf-8", "surrogatepass") + data)
    assert isinstance(mail, ParsedMail)
    assert all(len(cpr) == 10 and cpr.isdigit() for cpr in mail.cprs)
    for text in (mail.subject, mail.sender, mail.sender_name, mail.message_id, *mail.health, *mail.social):
        text.encode("utf-8")  # no lone surrogates: safe for the database and logs


def test_date_header_without_zone_is_utc_and_garbage_is_none() -> None:
    assert parse_mail(_plain("x", headers="Date: Tue, 05 Jan 2027 10:00:00 -0000\r\n")).date_header.tzinfo
    assert parse_mail(_plain("x", headers="Date: i går\r\n")).date_header is None
    assert date(2027, 1, 5) == parse_mail(_plain("x", headers="Date: Tue, 05 Jan 2027 10:00:00 +0100\r\n")).date_header.date()


def test_deeply_nested_html_keeps_its_text() -> None:
    markup = "<div>" * 400 + "CPR 120502-4127" + "</div>" * 400
    assert html_to_text(markup) == "CPR 120502-4127"


@pytest.mark.parametrize("charset", ["unicode_escape", "raw-unicode-escape", "idna", "punycode", "no-such-thing"])
def test_a_charset_that_is_no_charset_is_read_as_utf8(charset) -> None:
    """``unicode_escape`` would turn the text's backslashes into other
    characters: such a declared charset is ignored, as an unknown one is."""
    raw = (f"From: a@kommune.example\r\nSubject: Sparring\r\nMessage-ID: <c@y>\r\n"
           f'Content-Type: text/plain; charset="{charset}"\r\n\r\n'
           "CPR: 120502-4127\r\nHelbred: Angst \\u00e6 og \\x41 søvn\r\n").encode()
    mail = parse_mail(raw)
    assert mail.health == ("Angst \\u00e6 og \\x41 søvn",)
