"""What caseworkers write about an open case (pure): agreement and follow-ups.

    Emne: Re: Koordineringsmøde [K-7F3Q]       (the case reference anywhere in the subject)
    Enighed                                     (the plan is agreed: book the fællessamtale)

    Emne: Opfølgning [K-7F3Q]
    2027-03-01                                  (one date a line: 2027-03-01, 1-3-2027, 01.03.2027)
    2027-06-01

The keyword (``Enighed``/``Opfølgning``, any case, also without æ/ø) is the
subject's first word after any ``Re:``/``Sv:`` or the first line the sender
wrote. Only the sender's own lines are read: the quoted invitation below a
reply is not. A line that starts like a date but is none is refused by its
number, so the answer can name it without repeating what it says.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from scheduler.mail.caseref import CASE_REFERENCE, case_reference
from scheduler.planning.items import Rejection

_PREFIX = re.compile(r"^\s*((re|sv|vs|aw|fw|fwd)\s*:\s*)+", re.IGNORECASE)
_WORDS = {
    "agree": ("enighed", "enig", "enige", "agreed", "agreement"),
    "followup": ("opfølgning", "opfoelgning", "opfolgning", "opfølgninger", "follow-up", "followup"),
}
_FIRST_WORD = re.compile(r"^\s*([A-Za-zÆØÅæøå\-]+)")
_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})\b")
_DMY = re.compile(r"^(\d{1,2})[-./](\d{1,2})[-./](\d{4})\b")
MAX_DATES = 12


@dataclass(frozen=True)
class CaseMail:
    case: str
    action: str  # agree | followup
    dates: tuple[date, ...] = ()


def parse_case_mail(subject: str, lines: Sequence[str]) -> CaseMail | Rejection:
    """An agreement or the follow-up dates of the case named in ``subject``."""
    case = case_reference(subject)
    if case is None:
        return Rejection("case_reference", {})
    own = [line.strip() for line in lines if line.strip()]
    action = _action(CASE_REFERENCE.sub("", _PREFIX.sub("", subject.upper())).strip())
    skipped = 0
    if action is None and own:
        action = _action(own[0])
        skipped = 1 if action else 0
    if action is None:
        return Rejection("case_keyword", {})
    if action == "agree":
        return CaseMail(case, action)
    dates = _dates(own[skipped:], first_number=skipped + 1)
    if isinstance(dates, Rejection):
        return dates
    return CaseMail(case, action, dates)


def _action(text: str) -> str | None:
    match = _FIRST_WORD.match(text)
    word = match.group(1).lower().strip("-") if match else ""
    return next((name for name, words in _WORDS.items() if word in words), None)


def _dates(lines: Sequence[str], first_number: int) -> tuple[date, ...] | Rejection:
    """The dates, one a line; other text (a greeting, a name) is passed over.
    Lines are numbered as the sender sees them, blank ones not counted."""
    found: list[date] = []
    for number, line in enumerate(lines, start=first_number):
        if not line[:1].isdigit():
            continue
        day = read_date(line)
        if day is None:
            return Rejection("followup_line", {"line": number})
        found.append(day)
    if not found:
        return Rejection("followup_none", {})
    if len(found) > MAX_DATES:
        return Rejection("followup_many", {"count": MAX_DATES})
    return tuple(sorted(set(found)))


def read_date(text: str) -> date | None:
    """2027-03-01, 1-3-2027, 01.03.2027 or 1/3/2027 at the start of ``text``."""
    text = text.strip()
    iso, dmy = _ISO.match(text), _DMY.match(text)
    try:
        if iso:
            return date(int(iso[1]), int(iso[2]), int(iso[3]))
        if dmy:
            return date(int(dmy[3]), int(dmy[2]), int(dmy[1]))
    except ValueError:
        return None
    return None
