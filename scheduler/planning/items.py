"""Is a parsed mail a usable agenda item? Pure checks, no I/O, no clock.

The citizen's age and the session are decided later (allocation); here only
the content: exactly one valid CPR number, some health or social text, and
not more lines than the forum allows (more is rejected, never truncated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from scheduler.model import MailKind, ParsedMail
from scheduler.cpr import Cpr, CprError, parse_cpr


@dataclass(frozen=True)
class ItemContent:
    """What is stored for an item. ``repr`` hides the case text."""

    cpr: Cpr
    health: tuple[str, ...] = field(default=(), repr=False)
    social: tuple[str, ...] = field(default=(), repr=False)
    acute: bool = False
    attachments: tuple[str, ...] = ()  # dropped, named in the receipt

    @property
    def line_count(self) -> int:
        return len(self.health) + len(self.social)


@dataclass(frozen=True)
class Rejection:
    """Why a mail is refused: a code for ``scheduler.reasons.reason`` and
    its numeric parameters (never personal data)."""

    code: str
    params: dict[str, int] = field(default_factory=dict, hash=False)


def check_item(parsed: ParsedMail, today: date, max_lines: int = 5) -> ItemContent | Rejection:
    """The item in ``parsed`` or the first reason it cannot be taken in."""
    if parsed.kind in (MailKind.TOO_LARGE, MailKind.UNREADABLE):
        return Rejection(parsed.kind.value)
    if parsed.kind not in (MailKind.ITEM, MailKind.WITHDRAW):
        return Rejection("not_an_item")
    cpr = _one_cpr(parsed, today)
    if isinstance(cpr, Rejection):
        return cpr
    health = _non_empty(parsed.health)
    social = _non_empty(parsed.social)
    count = len(health) + len(social)
    if count == 0:
        return Rejection("no_text")
    if count > max_lines:
        return Rejection("too_many_lines", {"count": count, "max": max_lines})
    return ItemContent(cpr, health, social, parsed.acute, parsed.attachments)


def check_withdrawal(parsed: ParsedMail, today: date) -> Cpr | Rejection:
    """The citizen a withdrawal mail names, or why it names none."""
    if parsed.kind is MailKind.TOO_LARGE:
        return Rejection("too_large")
    return _one_cpr(parsed, today)


def _one_cpr(parsed: ParsedMail, today: date) -> Cpr | Rejection:
    if len(parsed.cprs) > 1:
        return Rejection("several_cprs", {"count": len(parsed.cprs)})
    if not parsed.cprs:
        return Rejection("cpr_format" if parsed.bad_cpr else "no_cpr")
    try:
        return parse_cpr(parsed.cprs[0], today)
    except CprError as error:
        return Rejection(f"cpr_{error.code}")


def _non_empty(lines: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(line.strip() for line in lines if line.strip())
