"""Danish CPR numbers: parsing, the birth date, masking and age.

The century comes from the 7th digit (CPR-kontorets table). No modulus-11
check: numbers without it have been issued since 2007 and are valid. Nothing
here logs or puts the number into an exception message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

_SHAPE = re.compile(r"\s*([0-9]{6})[ \-\u2010-\u2015]?([0-9]{4})\s*")

# The guard's detector: six digits, then any separator a person or a mail
# client may put there (blanks of every width, invisible characters, any
# dash or minus, each possibly repeated and mixed), then four digits. Wider
# than what intake accepts on purpose (any decimal digits, too): it must
# catch every such form.
_DASHES = "\\-\u00ad\u058a\u05be\u1806\u2010-\u2015\u2212\u2e3a\u2e3b\ufe58\ufe63\uff0d"
_BLANKS = " \\t\u00a0\u1680\u2000-\u200d\u202f\u205f\u2060\u3000\ufeff"
CPR_IN_TEXT = re.compile(rf"(?<!\d)(\d{{6}})[{_DASHES}{_BLANKS}]{{0,6}}(\d{{4}})(?!\d)")


class CprError(ValueError):
    """A CPR number that cannot be used; ``code`` is format, date or future.

    The message names the code only, never the number.
    """

    def __init__(self, code: str) -> None:
        super().__init__(f"invalid CPR number ({code})")
        self.code = code


@dataclass(frozen=True)
class Cpr:
    """A valid CPR number. ``repr`` shows the masked form only."""

    digits: str = field(repr=False)
    birth_date: date = field(repr=False)

    @property
    def masked(self) -> str:
        """``DDMMYY-xxxx``: safe for receipts and logs."""
        return f"{self.digits[:6]}-xxxx"

    @property
    def formatted(self) -> str:
        """``DDMMYY-XXXX``: the full number, for the agenda only."""
        return f"{self.digits[:6]}-{self.digits[6:]}"

    def age_on(self, day: date) -> int:
        """Whole years on ``day``; a 29 February birthday counts from 1 March
        in common years (tuple comparison of month and day does that)."""
        born = self.birth_date
        return day.year - born.year - ((day.month, day.day) < (born.month, born.day))

    def __repr__(self) -> str:
        return f"Cpr({self.masked})"

    __str__ = __repr__


def has_cpr(text: str) -> bool:
    """True when ``text`` holds something shaped like a CPR number, in any form."""
    return CPR_IN_TEXT.search(text) is not None


def mask_cprs(text: str) -> str:
    """``text`` with every CPR-shaped number as ``DDMMYY-xxxx``: the one
    guard for what leaves sparring (mails, subjects, names, calendar fields)."""
    return CPR_IN_TEXT.sub(lambda number: f"{number[1]}-xxxx", text) if text else text


def century(seventh: int, yy: int) -> int:
    """The birth century from the 7th digit and the two-digit year."""
    if seventh <= 3:
        return 1900
    if seventh in (4, 9):
        return 2000 if yy <= 36 else 1900
    return 2000 if yy <= 57 else 1800


def parse_cpr(text: str, today: date) -> Cpr:
    """A ``Cpr`` from ``DDMMYY-XXXX``, ``DDMMYY XXXX`` or ``DDMMYYXXXX``.

    Raises ``CprError`` with code "format" (not 10 digits), "date" (no such
    date) or "future" (born after ``today``).
    """
    shape = _SHAPE.fullmatch(text)
    if shape is None:
        raise CprError("format")
    digits = shape.group(1) + shape.group(2)
    day, month, yy = int(digits[:2]), int(digits[2:4]), int(digits[4:6])
    try:
        born = date(century(int(digits[6]), yy) + yy, month, day)
    except ValueError:
        raise CprError("date") from None
    if born > today:
        raise CprError("future")
    return Cpr(digits, born)
