"""The fast paths of the mail parser give what the stdlib calls they replace give.

``MimeHead`` against ``Message.get_content_type/get_param/get_filename/
get_content_charset``; ``headerforms.parse_address`` against ``email.utils.parseaddr``;
``parse._date`` against ``parsedate_to_datetime``; the text helpers against
their slow forms. Generated inputs lean on the characters that matter to each
grammar (quotes, backslashes, ``;``, ``=``, ``*``, ``%``, ``<>``, folds).
"""

from __future__ import annotations

from datetime import datetime, timezone
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import parseaddr, parsedate_to_datetime

from hypothesis import example, given, settings
from hypothesis import strategies as st
from lxml import etree
from lxml import html as lxml_html

from scheduler.mail import html as mail_html
from scheduler.mail import itemtext
from scheduler.mail.mimeparams import MimeHead
from scheduler.mail.headerforms import _SIMPLE_DATE, _SIMPLE_FROM
from scheduler.mail.headerforms import parse_address as _parseaddr
from scheduler.mail.headerforms import strict_address
from scheduler.mail.parse import _date

_PARAM_CHARS = st.sampled_from(list('abcnrfilemt*=;"\\% \t\'-_.0123456789/') + ["utf-8", "æ", "\udce6", "''"])
_NAMES = st.sampled_from(["charset", "name", "filename", "report-type", "boundary", "Name", "FILENAME*",
                          "filename*0", "filename*1", "filename*0*", "filename*1*", "name*", "charset*", "x"])
_VALUES = st.one_of(
    st.lists(_PARAM_CHARS, max_size=12).map("".join),
    st.sampled_from(['"a;b"', '"a\\"b"', "utf-8''%e6%f8.pdf", "iso-8859-1'da'%E6", "us-ascii''x",
                     "bogus''%ff", '"', "=?utf-8?q?a=C3=A6?=", "UTF-8", "latin-1", "\udce6"]),
)
_PARAM = st.tuples(_NAMES, st.sampled_from(["=", " = ", "", "=="]), _VALUES).map("".join)
_TYPES = st.sampled_from(["text/plain", "TEXT/HTML ", "text", "a/b/c", "", "message/rfc822", "image/png",
                          "multipart/report", "application/octet-stream", '"text/plain"'])
_HEADER_VALUE = st.one_of(
    st.tuples(_TYPES, st.lists(_PARAM, max_size=5), st.sampled_from([";", "; ", ";\n\t", ";;"]))
    .map(lambda t: t[0] + "".join(t[2] + p for p in t[1])),
    st.lists(_PARAM_CHARS, max_size=40).map("".join),
)
_DISPOSITIONS = st.one_of(st.none(), st.tuples(st.sampled_from(["attachment", "inline", "ATTACHMENT ", ""]),
                                               st.lists(_PARAM, max_size=4))
                          .map(lambda t: t[0] + "".join("; " + p for p in t[1])))


def _outcome(call):
    """The value, or that it raised (which exception does not matter to callers)."""
    try:
        return ("ok", call())
    except Exception:
        return ("raised", None)


def _message(ctype: str | None, disposition: str | None, default_digest: bool = False) -> Message:
    msg = Message(policy=compat32)
    if default_digest:
        msg.set_default_type("message/rfc822")
    msg.set_raw("X-First", "x")  # set_raw: stored as a parser would, surrogates and all
    if ctype is not None:
        msg.set_raw("Content-Type", ctype)
        msg.set_raw("content-type", "text/x-second; charset=second")  # only the first counts
    if disposition is not None:
        msg.set_raw("Content-Disposition", disposition)
    msg.set_raw("Content-ID", "<a@b>")
    return msg


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.none(), _HEADER_VALUE), _DISPOSITIONS, st.booleans())
@example("text/plain; name*0*=utf-8''%e6; name*1=x.pdf", "attachment; filename*=a; filename*0=b", False)
@example('text/plain; charset*=bogus\'\'%ff; name="a;b"', None, False)
@example("text/plain; charset=\udce6", "inline; filename=\"x\\\"y\"", False)
@example(None, "attachment", True)
def test_mime_head_equals_message_methods(ctype, disposition, digest):
    msg = _message(ctype, disposition, digest)
    made = _outcome(lambda: MimeHead(msg))
    assert made[0] == _outcome(msg.get_content_type)[0]  # str() of some Header objects raises
    if made[0] == "raised":
        return
    head = made[1]
    assert head.ctype == msg.get_content_type()
    assert _outcome(head.filename) == _outcome(msg.get_filename)
    assert _outcome(head.charset) == _outcome(msg.get_content_charset)
    for name in ("name", "charset", "report-type", "NAME", "filename"):
        assert _outcome(lambda: head.param(name)) == _outcome(lambda: msg.get_param(name))
        assert _outcome(lambda: head.param(name, header="content-disposition")) == _outcome(
            lambda: msg.get_param(name, header="content-disposition"))
    old_disposition = _outcome(lambda: str(msg.get("content-disposition") or "").split(";")[0].strip().lower())
    assert _outcome(lambda: head.disposition) == old_disposition
    assert head.content_id == bool(msg.get("content-id"))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_mime_head_on_parsed_bytes(junk):
    """Header values with undecodable bytes come back from compat32 as Header objects."""
    raw = b"Content-Type: text/plain; charset=\xe6; name=\"\xf8.pdf\"\n" + junk + b"\n\nbody\n"
    msg = BytesParser(policy=compat32).parsebytes(raw)
    head = MimeHead(msg)
    assert head.ctype == msg.get_content_type()
    assert _outcome(head.filename) == _outcome(msg.get_filename)
    assert _outcome(head.charset) == _outcome(msg.get_content_charset)


_ADDR_CHARS = st.sampled_from(list('ab.@<>" \t\r\n,;:()[]\\=?_-+\'') + ["bo", "x.dk", "æ", "\xa0", "=?utf-8?q?a?="])
_NASTY_FROM = st.lists(_ADDR_CHARS, max_size=30).map("".join)
_ATOM = st.text(st.sampled_from(list("abcXYZ019!#$%&'*+/=?^_`{|}~-")), min_size=1, max_size=6)
_ADDRESS = st.tuples(st.lists(_ATOM, min_size=1, max_size=3), st.lists(_ATOM, min_size=1, max_size=3)).map(
    lambda t: ".".join(t[0]) + "@" + ".".join(t[1]))
_NAME = st.lists(st.sampled_from(list("Bo Æse.,\\'\"()\t-=?") + ["=?utf-8?b?w4VzZQ==?="]), max_size=20).map("".join)
_USUAL_FROM = st.one_of(
    _ADDRESS,
    _ADDRESS.map(lambda a: f"<{a}>"),
    st.tuples(_NAME, _ADDRESS).map(lambda t: f"{t[0]} <{t[1]}>"),
    st.tuples(_NAME, _ADDRESS).map(lambda t: f'"{t[0]}" <{t[1]}>'),
    st.tuples(st.sampled_from(["", " ", "\t", "\r\n "]), _ADDRESS, st.sampled_from(["", " ", "\r\n", " x", ","]))
    .map("".join),
)


@settings(max_examples=5000, deadline=None)
@given(st.one_of(_USUAL_FROM, _NASTY_FROM))
@example('"Jensen, Bo" <bo@x.dk>')
@example("Bo  Jensen\t<bo@x.dk>")
@example('"a\\"b" <bo@x.dk>')
@example("bo@x.dk (Bo)")
@example("a@b@c")
@example("Bo <bo@x.dk> , Eva <eva@x.dk>")
def test_parseaddr_fast_path(value):
    """The fast path gives what ``parseaddr`` gives; anything it does not take
    is read by the strict parser, so that the two never disagree on the address."""
    if _SIMPLE_FROM.fullmatch(value):
        assert _parseaddr(value) == parseaddr(value)
        # never another address (the strict parser may refuse a name such as "." that the stdlib trips on)
        assert strict_address(value)[1] in (parseaddr(value)[1], "")
    else:
        assert _parseaddr(value) == strict_address(value)


def test_parseaddr_fast_path_is_taken_for_the_usual_forms():
    for value in ("bo@x.dk", "<bo@x.dk>", "Bo Jensen <bo@x.dk>", '"Jensen, Bo" <bo@x.dk>',
                  "=?utf-8?b?w4VzZQ==?= <aase@x.dk>"):
        assert _SIMPLE_FROM.fullmatch(value), value


_DAYS = st.sampled_from(["Mon, ", "Sun, ", "mon, ", "Mon,", "", "Xyz, "])
_DATE = st.tuples(
    _DAYS, st.sampled_from(["1", "01", "31", "32", "0", "29"]), st.sampled_from([" Nov ", " Feb ", " nov ", " Xyz "]),
    st.sampled_from(["2025", "1999", "0099", "9999", "99", "10000"]),
    st.sampled_from([" 09:38:40", " 23:59:60", " 24:00:00", " 9:38:40", " 09:38"]),
    st.sampled_from([" +0100", " -0000", " +0000", " -0530", " +9999", " +2400", " GMT", "", " +01"]),
).map("".join)


def _old_date(value: str):
    try:
        moment = parsedate_to_datetime(value)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        moment.astimezone(timezone.utc)  # a date at the end of time is no date (as _date)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment


@settings(max_examples=3000, deadline=None)
@given(st.one_of(_DATE, st.text(max_size=40)))
@example("Mon, 24 Nov 2025 09:38:40 +0100")
@example("Mon, 29 Feb 2025 09:38:40 +0100")
def test_date_fast_path(value):
    new = _date({"date": value})
    old = _old_date(value)
    assert new == old
    if new is not None:
        assert (new.tzinfo, new.utcoffset(), type(new)) == (old.tzinfo, old.utcoffset(), type(old))
    if _SIMPLE_DATE.fullmatch(value):
        assert new is None or isinstance(new, datetime)


_LINE_CHARS = st.sampled_from(list("cprCPR0123456789 -.:\t\u2013") + ["nr", "nummer", "Cpr", "ſ", "\u212a", "²", "٣"])


@settings(max_examples=3000, deadline=None)
@given(st.lists(_LINE_CHARS, max_size=30).map("".join))
@example("CPR: 220558-8582")
@example("cpr²")
def test_scan_cprs_guard_changes_nothing(line):
    """The CPR_HINT guard only skips lines where the full scan finds nothing."""
    fast: list[str] = []
    slow: list[str] = []
    bad = itemtext._scan_cprs(line, fast)
    original = itemtext._CPR_HINT
    try:
        itemtext._CPR_HINT = _AlwaysMatch()
        slow_bad = itemtext._scan_cprs(line, slow)
    finally:
        itemtext._CPR_HINT = original
    assert (bad, fast) == (slow_bad, slow)


class _AlwaysMatch:
    def search(self, line):
        return True


_HTML = st.lists(st.sampled_from([
    "<p>", "</p>", "<br>", "<div>", "</div>", "<table><tr><td>a</td><td> b </td></tr></table>", "<o:p>",
    "</o:p>", "&nbsp;", "tekst", " ", "\n", "<blockquote>q</blockquote>", "<hr>", "<style>x</style>",
    "<x:>y</x:>", "<span>", "</span>", "<li>", "<!-- c -->", "<B>fed</B>",
]), max_size=30).map("".join)


def _old_html_to_text(markup: str) -> str:
    """html_to_text as it was: lxml.html's parser and text_content()."""
    parser = lxml_html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True, huge_tree=True)
    old_parser, old_string = mail_html._PARSER, mail_html._STRING
    mail_html._PARSER, mail_html._STRING = parser, lambda el: el.text_content()
    try:
        return mail_html.html_to_text(markup)
    finally:
        mail_html._PARSER, mail_html._STRING = old_parser, old_string


@settings(max_examples=1000, deadline=None)
@given(_HTML)
def test_html_parser_change_keeps_the_text(markup):
    assert mail_html.html_to_text(markup) == _old_html_to_text(markup)


def test_html_deep_nesting_keeps_text_content():
    markup = "<div>" * 300 + "a<b>b</b>&nbsp;c" + "</div>" * 300
    assert mail_html.html_to_text(markup) == _old_html_to_text(markup)
    root = lxml_html.document_fromstring(markup.encode(), parser=mail_html._PARSER)
    assert isinstance(root, etree._Element)
