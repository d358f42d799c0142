"""Meeting titles given by people (``book --title``, a mail's "Titel:"):
what makes one unfit to be sent (pure).

A title becomes a mail Subject and an iCalendar SUMMARY: a line break in
it would start a new header (``Bcc:``), and a CPR number would reach every
attendee's calendar.
"""

from __future__ import annotations

import unicodedata

from scheduler.cpr import has_cpr

# Control characters (CR, LF, NUL, ...) and the Unicode line and paragraph separators.
_BREAKING = {"Cc", "Zl", "Zp"}


def has_control(text: str) -> bool:
    return any(unicodedata.category(char) in _BREAKING for char in text)


def title_problem(title: str) -> str | None:
    """Why ``title`` cannot be used ("control", "cpr", "empty"), or None."""
    if has_control(title):
        return "control"
    if has_cpr(title):
        return "cpr"
    if not title.strip():
        return "empty"
    return None
