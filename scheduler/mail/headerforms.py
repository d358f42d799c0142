"""The From and Date forms nearly every mailer writes, read without the
stdlib's general parsers (``parseaddr`` alone costs 10-17 µs a mail).

Anything that is not exactly one of these forms goes to ``parseaddr`` or
``parsedate_to_datetime``; the results are equal either way, which
tests/test_parse_equivalence.py checks with hypothesis.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from email.utils import parseaddr, parsedate_to_datetime

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


def parse_address(raw: str) -> tuple[str, str]:
    """(display name, address) as ``email.utils.parseaddr`` gives them; never raises."""
    simple = _SIMPLE_FROM.fullmatch(raw)
    if simple is None:
        try:
            return parseaddr(raw)
        except Exception:
            return "", ""
    if simple["bare"]:
        return "", simple["bare"]
    name = simple["quoted"] if simple["quoted"] is not None else " ".join(_WS.split(simple["words"] or ""))
    return name, simple["angle"]


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
