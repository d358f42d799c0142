"""The item text of a caseworker's mail: CPR numbers, sections and flags.

``read_body`` reads an item from a subject and a plain-text body;
``own_lines`` gives the lines the sender wrote. Quotes, forwarded mails and
signatures are cut off first, so numbers in quoted mails never count. An
unlabelled number counts as a CPR only if it looks like a date; a CPR label
followed by something that is not 10 digits marks the mail ``bad_cpr``.

Kept apart from ``parse`` (MIME walking and classification) because these
rules are about the language caseworkers write, not about mail; they are
pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scheduler import cpr

_SEP = r"(?:[ \t]?[-\u2010-\u2015][ \t]?|[ \t])?"
_NUMBER = re.compile(rf"(?<![0-9])([0-9]{{6}}){_SEP}([0-9]{{4}})(?![0-9])")
_CPR_LABEL = re.compile(r"\bcpr(?:[ .\-]*(?:nummer|nr)\b\.?)?[ \t]*[:\-\u2013.]?[ \t]*", re.IGNORECASE)
_SECTION = re.compile(
    r"(?P<label>helbredsm(?:æ|ae)ssige\s+forhold|helbredsforhold|helbred|health"
    r"|sociale\s+udfordringer|sociale\s+forhold|social\s+challenges|social)"
    r"(?!\w)[ \t]*[:\-\u2013]?[ \t]*(?P<rest>.*)",
    re.IGNORECASE,
)
_BULLET = re.compile(r"^[\-\u2022*\u00b7\u25aa\u2013][ \t]+")
_QUOTE = re.compile(
    r"^(?:>|_{10,}$|-{2,}\s*(?:original message|oprindelig meddelelse|videresendt meddelelse"
    r"|forwarded message|begin forwarded message)\b)",
    re.IGNORECASE,
)
_HEADER_FROM = re.compile(r"^(?:fra|from)\s*:", re.IGNORECASE)
_HEADER_SENT = re.compile(r"^(?:sendt|sent|dato|date)\s*:", re.IGNORECASE)
_ATTRIBUTION = re.compile(r"^(?:den|on)\b.{0,300}\b(?:skrev|wrote)\b[^:]{0,200}:$", re.IGNORECASE)
_SIGNATURE = re.compile(
    r"^(?:med\s+venlig\s+hilsen|venlig\s+hilsen|venlige\s+hilsner|(?:de\s+)?bedste\s+hilsner|hilsen"
    r"|mvh|vh|best\s+regards|kind\s+regards|regards|best\s+wishes)\b",
    re.IGNORECASE,
)
_WITHDRAW = re.compile(r"tr(?:æ|ae)k\s+tilbage|tilbagetr(?:æ|ae)k", re.IGNORECASE)
_ACUTE = re.compile(r"\bakut\b", re.IGNORECASE)
_BLANKS = " \t\xa0\ufeff\u200b"
# Most lines hold neither a CPR label nor six digits in a row: one search rules both out.
_CPR_HINT = re.compile(r"cpr|[0-9]{6}", re.IGNORECASE)
_ATTRIBUTION_START = re.compile(r"(?:den|on)\b", re.IGNORECASE)
_DIGIT_OR_AT = re.compile(r"[0-9@]")


@dataclass(frozen=True)
class _Body:
    withdraw: bool
    acute: bool
    cprs: tuple[str, ...]
    bad_cpr: bool
    health: tuple[str, ...]
    social: tuple[str, ...]


def read_body(subject: str, text: str) -> _Body:
    """The item as the caseworker wrote it: CPR numbers, sections, flags."""
    lines = own_lines(text)
    found: list[str] = []
    bad = _scan_cprs(subject, found)
    for line in lines:
        bad = _scan_cprs(line, found) or bad
    health, social = _sections(lines)
    first = next((line for line in lines if line), "")
    return _Body(
        withdraw=bool(_WITHDRAW.search(subject) or _WITHDRAW.search(first)),
        acute=bool(_ACUTE.search(subject)),
        cprs=tuple(dict.fromkeys(found)),
        bad_cpr=bad,
        health=tuple(health),
        social=tuple(social),
    )


def own_lines(text: str) -> list[str]:
    """The body's lines before the first quote or signature, blanks stripped."""
    return [line.strip(_BLANKS) for line in _own_lines(text.replace("\xa0", " ").split("\n"))]


def mask_cprs(text: str) -> str:
    """``text`` with the last four digits of every CPR-shaped number masked."""
    return cpr.mask_cprs(text)


def _own_lines(lines: list[str]) -> list[str]:
    """The lines before the first quote or signature."""
    for index, raw in enumerate(lines):
        if raw.rstrip("\r") in ("-- ", "--"):
            return lines[:index]
        line = raw.strip(_BLANKS)
        if _QUOTE.match(line) or _SIGNATURE.match(line) or _attribution(line, lines, index):
            return lines[:index]
        if _HEADER_FROM.match(line) and _sent_follows(lines, index):
            return lines[:index]
    return lines


def _attribution(line: str, lines: list[str], index: int) -> bool:
    """"Den 5. jan. 2027 kl. 12.00 skrev Bo <bo@…>:", possibly wrapped on two lines."""
    if not _ATTRIBUTION_START.match(line) or not _DIGIT_OR_AT.search(line):
        return False
    following = lines[index + 1].strip(_BLANKS) if index + 1 < len(lines) else ""
    return bool(_ATTRIBUTION.match(line) or _ATTRIBUTION.match(f"{line} {following}"))


def _sent_follows(lines: list[str], index: int) -> bool:
    following = [line.strip(_BLANKS) for line in lines[index + 1 : index + 5]]
    return any(_HEADER_SENT.match(line) for line in following if line)


def _scan_cprs(line: str, found: list[str]) -> bool:
    """Append the CPR numbers in ``line``; True if a label holds a malformed one."""
    if not _CPR_HINT.search(line):
        return False
    hits: dict[int, str] = {}
    bad = False
    for label in _CPR_LABEL.finditer(line):
        number = _NUMBER.match(line, label.end())
        if number:
            hits[number.start()] = number[1] + number[2]
        elif line[label.end() : label.end() + 1].isdigit():
            bad = True
    for number in _NUMBER.finditer(line):
        if number.start() not in hits and _plausible(number[1]):
            hits[number.start()] = number[1] + number[2]
    found.extend(hits[position] for position in sorted(hits))
    return bad


def _plausible(ddmmyy: str) -> bool:
    """An unlabelled number must at least look like a date to count as a CPR."""
    return 1 <= int(ddmmyy[:2]) <= 31 and 1 <= int(ddmmyy[2:4]) <= 12


def _sections(lines: list[str]) -> tuple[list[str], list[str]]:
    sections: dict[str, list[str]] = {"health": [], "social": []}
    current: list[str] | None = None
    for line in lines:
        if not line:
            current = None
            continue
        label = _SECTION.match(_BULLET.sub("", line))
        if label:
            current = sections["social" if label["label"][0] in "sS" else "health"]
            if label["rest"].strip():
                current.append(label["rest"].strip())
        elif _CPR_LABEL.match(line) or _NUMBER.fullmatch(line):
            current = None
        elif current is not None:
            current.append(line)
    return sections["health"], sections["social"]
