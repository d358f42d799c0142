"""The coordinators' decisions, as written in a reply to the agenda (issue 15).

The agenda's subject ends with a reference such as ``[SF unge 2027-01-14]``
(series id and session date), so that a plain ``Re:`` binds the reply to
its session. The reply holds one line per slot::

    3: opstart modtager: rikke@kommune.example - kort bemærkning
    4: intet grundlag
    5: udsat - mangler lægeerklæring
    6: henvist Jobcenter Nord

Pure: text in, values out. A line that starts with a number is meant as a
decision; one that cannot be read is returned with the reason, so that the
answer can name it. Other lines (greetings, the signature) are left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date

from scheduler.mail.itemtext import mask_cprs

_REFERENCE = re.compile(r"\[SF ([a-z0-9][a-z0-9_-]{0,31}) (\d{4}-\d{2}-\d{2})\]", re.IGNORECASE)
_ATTEMPT = re.compile(r"^(?:punkt|pkt\.?|slot|item)?\s*(\d{1,3})(?![\d.,:/-]\d)\s*[:.)]?\s*(.*)$", re.IGNORECASE)
_NOTE = re.compile(r"\s+[-\u2013\u2014]\s*|\s*[-\u2013\u2014]\s+")  # a dash with a space on either side
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_RECEIVER = re.compile(r"^\[?\s*(?:modtager|receiver)\s*:\s*([^\]\s]+)\s*\]?$", re.IGNORECASE)

# The words a decision may be written with, Danish first; value: the decision.
_WORDS = (
    (re.compile(r"^(?:opstart|start)\b", re.IGNORECASE), "start"),
    (re.compile(r"^(?:intet|ikke)\s+grundlag\b|^no[\s-]basis\b", re.IGNORECASE), "no-basis"),
    (re.compile(r"^(?:udsat|udsæt|postponed?)\b", re.IGNORECASE), "postponed"),
    (re.compile(r"^(?:henvist|henvis|referred|refer)\b", re.IGNORECASE), "referred"),
)


def reference(series_id: str, day: date) -> str:
    """The subject's reference of a session: short, readable, no personal data."""
    return f"[SF {series_id} {day.isoformat()}]"


def find_reference(subject: str) -> tuple[str, date] | None:
    """(series id, session date) named in a subject, or None."""
    match = _REFERENCE.search(subject or "")
    if match is None:
        return None
    try:
        return match[1].lower(), date.fromisoformat(match[2])
    except ValueError:
        return None


@dataclass(frozen=True)
class DecisionLine:
    slot: int
    decision: str  # start | no-basis | postponed | referred
    receiver: str | None = None  # opstart: the receiving caseworker
    referred_to: str | None = None  # henvist: to whom
    note: str | None = None  # the free text after the dash
    number: int = 0  # 1-based among the reply's own lines; 0: not from a mail
    text: str = ""  # as written, CPR numbers masked


@dataclass(frozen=True)
class BadLine:
    number: int  # 1-based among the reply's own lines
    text: str  # as written, CPR numbers masked
    problem: str  # a code for ``reasons``: decision_unknown, receiver_invalid, ...


def read_decisions(lines: list[str] | tuple[str, ...]) -> tuple[list[DecisionLine], list[BadLine]]:
    """The decisions written in a reply's own lines, and the lines meant as
    decisions that cannot be read."""
    found: dict[int, DecisionLine] = {}
    bad: list[BadLine] = []
    for number, line in enumerate(lines, start=1):
        attempt = _ATTEMPT.match(line.strip())
        if attempt is None:
            continue
        read = read_line(int(attempt[1]), attempt[2])
        shown = mask_cprs(line.strip())[:120]
        if isinstance(read, str):
            bad.append(BadLine(number, shown, read))
        else:
            found.pop(read.slot, None)  # a slot written twice: the later line counts
            found[read.slot] = replace(read, number=number, text=shown)
    return list(found.values()), bad


def read_line(slot: int, text: str) -> DecisionLine | str:
    """One decision after its slot number, or the problem's code."""
    if slot < 1:
        return "slot_invalid"
    head, note = _split_note(text.strip())
    for pattern, decision in _WORDS:
        match = pattern.match(head)
        if match is None:
            continue
        rest = head[match.end():].strip()
        return _with_rest(slot, decision, rest, note)
    return "decision_unknown"


def _split_note(text: str) -> tuple[str, str | None]:
    parts = _NOTE.split(text, maxsplit=1)
    note = parts[1].strip() if len(parts) > 1 else ""
    return parts[0].strip(), note or None


def _with_rest(slot: int, decision: str, rest: str, note: str | None) -> DecisionLine | str:
    if decision == "start":
        if not rest:
            return DecisionLine(slot, decision, note=note)
        receiver = _RECEIVER.match(rest)
        if receiver is None or not _ADDRESS.match(receiver[1]):
            return "receiver_invalid"
        return DecisionLine(slot, decision, receiver=receiver[1].lower(), note=note)
    if decision == "referred":
        if not rest:
            return "referred_to_missing"
        return DecisionLine(slot, decision, referred_to=rest[:100], note=note)
    if rest:
        return "decision_trailing"
    return DecisionLine(slot, decision, note=note)
