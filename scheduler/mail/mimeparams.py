"""Content-Type and Content-Disposition of one MIME part, each parsed once.

``email.message.Message`` re-parses a header's parameters on every
``get_content_type``, ``get_param``, ``get_filename`` and
``get_content_charset`` call, and ``parse`` needs several of those per part.
A ``MimeHead`` reads the part's headers in one pass and parses each
parameter list at most once, with the results of those ``Message`` methods
(tests/test_parse_equivalence.py compares them on generated headers): the
same split on ``;`` outside quotes, RFC 2231 continuations and charsets
through ``email.utils.decode_params``. Where ``Message`` raises on malformed
parameters, the methods here raise ``MalformedParams``; a caller that
caught the one catches the other.
"""

from __future__ import annotations

from email.message import Message
from email.utils import collapse_rfc2231_value, decode_params, unquote

_MISSING = object()


class MalformedParams(ValueError):
    """Parameters ``email.utils.decode_params`` cannot read (the text is not kept)."""


class MimeHead:
    """A part's content type, disposition and their parameters."""

    __slots__ = ("ctype", "content_id", "_ct", "_cd", "_parsed")

    def __init__(self, part: Message):
        found = {"content-type": _MISSING, "content-disposition": _MISSING, "content-id": _MISSING}
        for name, value in part.raw_items():
            key = name.lower()
            if found.get(key, None) is _MISSING:  # the first of each, as Message.get
                found[key] = part.policy.header_fetch_parse(name, value)
        self._ct, self._cd = found["content-type"], found["content-disposition"]
        self.ctype = _content_type(self._ct, part)
        self.content_id = bool(found["content-id"] is not _MISSING and found["content-id"])
        self._parsed: dict[str, object] = {}

    @property
    def disposition(self) -> str:
        """The disposition word, lower-cased ("attachment", "inline"), "" without one."""
        return "" if self._cd is _MISSING else str(self._cd or "").split(";")[0].strip().lower()

    def param(self, name: str, failobj=None, header: str = "content-type"):
        """``Message.get_param(name, failobj, header)``."""
        params = self._params(header)
        if params is None:
            return failobj
        name = name.lower()
        for key, value in params:
            if key.lower() == name:
                return value
        return failobj

    def filename(self) -> str | None:
        """``Message.get_filename()``."""
        name = self.param("filename", _MISSING, "content-disposition")
        if name is _MISSING:
            name = self.param("name", _MISSING)
        return None if name is _MISSING else collapse_rfc2231_value(name).strip()

    def charset(self) -> str | None:
        """``Message.get_content_charset()``."""
        charset = self.param("charset", _MISSING)
        if charset is _MISSING:
            return None
        if isinstance(charset, tuple):  # RFC 2231: decode, and it had better be ASCII
            try:
                charset = str(charset[2].encode("raw-unicode-escape"), charset[0] or "us-ascii")
            except (LookupError, UnicodeError):
                charset = charset[2]
        if not charset.isascii():
            return None
        return charset.lower()

    def _params(self, header: str) -> list | None:
        """``Message.get_params(header=header)``; None without that header."""
        if header not in self._parsed:
            value = self._ct if header == "content-type" else self._cd
            try:
                self._parsed[header] = None if value is _MISSING else parse_params(str(value))
            except Exception:  # decode_params raises on e.g. "n*=a; n*0=b"
                self._parsed[header] = MalformedParams
        params = self._parsed[header]
        if params is MalformedParams:
            raise MalformedParams("malformed MIME parameters")
        return params


def _content_type(value, part: Message) -> str:
    """``Message.get_content_type()`` from the first Content-Type value."""
    if value is _MISSING:
        return part.get_default_type()
    ctype = str(value).partition(";")[0].strip().lower()
    return ctype if ctype.count("/") == 1 else "text/plain"


def parse_params(value: str) -> list[tuple[str, object]]:
    """Unquoted (name, value) pairs of a header value, as ``Message.get_params``."""
    pairs = []
    for piece in _split(value):
        name, equals, rest = piece.partition("=")
        if equals:  # a name is lower-cased, a bare word (the type itself) is not
            pairs.append((name.strip().lower(), rest.strip()))
        else:
            pairs.append((piece.strip(), ""))
    return [(name, _unquote(value)) for name, value in decode_params(pairs)]


def _unquote(value):
    if isinstance(value, tuple):  # RFC 2231: (charset, language, value)
        return value[0], value[1], unquote(value[2])
    return unquote(value)


def _split(value: str) -> list[str]:
    """The ``;``-separated pieces; a ``;`` inside a quoted string does not split."""
    if '"' not in value:
        return value.split(";")
    pieces = []
    rest = ";" + value
    while rest[:1] == ";":
        rest = rest[1:]
        end = rest.find(";")
        while end > 0 and (rest.count('"', 0, end) - rest.count('\\"', 0, end)) % 2:
            end = rest.find(";", end + 1)
        if end < 0:
            end = len(rest)
        pieces.append(rest[:end])
        rest = rest[end:]
    return pieces
