"""Meeting requests by mail: a documented, forgiving format (pure).

    Emne: Netværksmøde            (or Koordineringsmøde)
    Deltagere: a@kommune.example, b@kommune.example
    Valgfri: c@kommune.example
    Eksterne: mor@example.org
    Periode: 2027-02-01 - 2027-02-14      (or 01-02-2027 til 14-02-2027)
    Varighed: 60                          (minutes; default from the config)
    Titel: Netværksmøde om forløbet       (optional; never the citizen's name or CPR:
                                          a CPR number or control character refuses the request)

Internal participants (Deltagere, Valgfri) are booked by free/busy; the
sender takes part too. Addresses outside the allowlist named as internal
are invited as external. Labels in Danish or English, any case.

An outsider can write anything here, so the period must end no earlier
than the day the mail arrived and no later than ``MAX_AHEAD`` days after
it, and at most ``max_externals`` people are invited from outside.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from scheduler.mail.headerforms import VALID_ADDRESS
from scheduler.mail.parse import ParsedMail
from scheduler.planning.items import Rejection
from scheduler.planning.titles import title_problem

_LABELS = {
    "required": ("deltagere", "deltager", "participants", "required"),
    "optional": ("valgfri", "valgfrie", "optional"),
    "external": ("eksterne", "ekstern", "external", "netværk"),
    "period": ("periode", "period", "vindue", "window"),
    "duration": ("varighed", "duration", "minutter"),
    "title": ("titel", "title", "emne"),
}
_LINE = re.compile(r"^\s*([A-Za-zÆØÅæøå]+)\s*[:\-]\s*(.*)$")
_ADDRESS = re.compile(r"[^\s,;<>]+@[^\s,;<>]+\.[A-Za-z]{2,}")
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})|(\d{1,2})[-./](\d{1,2})[-./](\d{4})")
MAX_AHEAD = 366  # days: how far ahead of its arrival a request may reach


@dataclass(frozen=True)
class MeetingRequest:
    kind: str  # network | coordination
    first: date
    last: date
    duration: int | None
    required: tuple[str, ...]
    optional: tuple[str, ...]
    external: tuple[str, ...]
    title: str | None


def parse_request(parsed: ParsedMail, internal, today: date, max_externals: int = 20) -> MeetingRequest | Rejection:
    """``internal(address) -> bool`` tells who may be looked up by free/busy;
    ``today`` is the day the mail arrived."""
    fields = _fields(parsed.request_lines)
    kind = "coordination" if "koordinering" in parsed.subject.lower() else "network"
    period = _period(fields.get("period", ""))
    if period is None:
        return Rejection("request_period", {})
    if not period_allowed(*period, today):
        return Rejection("request_period_range", {"max": MAX_AHEAD})
    required = [parsed.sender, *_addresses(fields.get("required", ""))]
    optional = _addresses(fields.get("optional", ""))
    external = _addresses(fields.get("external", ""))
    external += [a for a in required + optional if not internal(a)]
    external = list(dict.fromkeys(external))
    if len(external) > max_externals:
        return Rejection("too_many_externals", {"count": len(external), "max": max_externals})
    required = [a for a in dict.fromkeys(required) if internal(a)]
    optional = [a for a in dict.fromkeys(optional) if internal(a) and a not in required]
    duration = fields.get("duration", "").split()[0] if fields.get("duration") else ""
    if duration and (not duration.isdigit() or not 10 <= int(duration) <= 480):
        return Rejection("request_duration", {})
    title = fields.get("title") or None
    if title and title_problem(title):  # shown in subjects and calendars: refused, not sent
        return Rejection("request_title", {})
    return MeetingRequest(kind, *period, int(duration) if duration else None, tuple(required),
                          tuple(optional), tuple(external), title)


def period_allowed(first: date, last: date, today: date) -> bool:
    """A period that does not lie in the past and reaches at most ``MAX_AHEAD`` days ahead."""
    return today <= last <= today + timedelta(days=MAX_AHEAD) and first <= last


def _fields(lines) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in lines:
        match = _LINE.match(line)
        if not match:
            continue
        label = match.group(1).lower()
        for name, words in _LABELS.items():
            if label in words and name not in found:
                found[name] = match.group(2).strip()
    return found


def _addresses(text: str) -> list[str]:
    """The valid addresses in ``text``; anything else shaped like one
    (``mor@\x00examp¾e.org``) is dropped: it could not be written in an invitation."""
    found = (a.lower().strip(".") for a in _ADDRESS.findall(text))
    return [a for a in found if VALID_ADDRESS.fullmatch(a)]


def _period(text: str) -> tuple[date, date] | None:
    days = []
    for m in _DATE.finditer(text):
        try:
            days.append(date(int(m[1]), int(m[2]), int(m[3])) if m[1] else date(int(m[6]), int(m[5]), int(m[4])))
        except ValueError:
            return None
    if len(days) != 2 or days[1] < days[0]:
        return None
    return days[0], days[1]
