"""The From and Date forms nearly every mailer writes, read without the
stdlib's general parsers (``parseaddr`` alone costs 10-17 µs a mail).

A From is read strictly: exactly one address, syntactically valid, in
ASCII. ``parseaddr`` is not strict (``a@x.example <evil@y.org>`` gives
``a@x.example``, and Python 3.11's has no ``strict=True``), so anything
that is not exactly one of the usual forms goes to ``email.headerregistry``,
and any defect it reports, a second address or a non-ASCII address gives
no address at all. A Date that is not the usual form goes to
``parsedate_to_datetime``. For the usual forms the results are those of
the stdlib, which tests/test_parse_equivalence.py checks with hypothesis.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from email.errors import ObsoleteHeaderDefect
from email.headerregistry import HeaderRegistry
from email.utils import parsedate_to_datetime

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR = rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_WORD = r'[^()<>@,:;"\[\] \t\r\n]+'  # an atom of a display name: dots allowed, as parseaddr
_SIMPLE_FROM = re.compile(  # "a@x", "<a@x>", "Name <a@x>", "\"Quoted, Name\" <a@x>", nothing else
    rf'[ \t\r\n]*(?:(?P<bare>{_ADDR})|(?:"(?P<quoted>[^"\\\r]*)"|(?P<words>{_WORD}(?:[ \t\r\n]+{_WORD})*))?'
    rf'[ \t\r\n]*<(?P<angle>{_ADDR})>)[ \t\r\n]*'
)
_WS = re.compile(r"[ \t\r\n]+")
_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
_SIMPLE_DATE = re.compile(  # "Mon, 24 Nov 2025 09:38:40 +0100"
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" ([1-9][0-9]{3}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-][0-9]{4})"
)


_REGISTRY = HeaderRegistry()
VALID_ADDRESS = re.compile(_ADDR)  # one dot-atom address in ASCII


def parse_address(raw: str) -> tuple[str, str]:
    """(display name, address) of the one valid address in a From value, as
    ``email.utils.parseaddr`` gives them for the usual forms; ("", "") for
    anything else. Never raises."""
    simple = _SIMPLE_FROM.fullmatch(raw)
    if simple is None:
        return strict_address(raw)
    if simple["bare"]:
        return "", simple["bare"]
    name = simple["quoted"] if simple["quoted"] is not None else " ".join(_WS.split(simple["words"] or ""))
    return name, simple["angle"]


def strict_address(raw: str) -> tuple[str, str]:
    """``parse_address`` by ``email.headerregistry``: any defect but obsolete
    syntax (``Anne B. Testesen <a@x>``, common and harmless) gives no address."""
    try:
        header = _REGISTRY("from", _WS.sub(" ", raw))  # unfolded, as a parser hands it over
        if any(not isinstance(d, ObsoleteHeaderDefect) for d in header.defects) or len(header.addresses) != 1:
            return "", ""
        (address,) = header.addresses
        if not VALID_ADDRESS.fullmatch(address.addr_spec):
            return "", ""
        return address.display_name, address.addr_spec
    except Exception:  # the header classes raise on some malformed input
        return "", ""


def parse_date(value: str) -> datetime:
    """``email.utils.parsedate_to_datetime``, and its exceptions."""
    simple = _SIMPLE_DATE.fullmatch(value)
    return _simple_date(simple) if simple else parsedate_to_datetime(value)


def _simple_date(found: re.Match) -> datetime:
    day, month, year, hour, minute, second, zone = found.groups()
    offset = abs(int(zone))
    seconds = (offset // 100 * 3600 + offset % 100 * 60) * (-1 if zone[0] == "-" else 1)
    if zone == "-0000":  # "no zone information": a naive time, as the stdlib gives
        return datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second))
    return datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second),
                    tzinfo=timezone(timedelta(seconds=seconds)))
