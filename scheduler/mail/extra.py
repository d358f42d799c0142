"""The coordinators' answer to a backlog warning (issue 16), as written in a reply.

The warning's subject ends with a reference such as ``[Ekstra unge
2027-01-18 10:00]`` (series id and the proposed start, local time), so that a
plain ``Re:`` binds the reply to the proposal. The reply holds a line
``Ekstra møde: ja`` (add it) or ``Ekstra møde: nej`` (decline it); case,
accents and "oe"/"o" for "ø" do not matter, and English ("Extra session:
yes") is read too. Pure: text in, values out.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

_REFERENCE = re.compile(r"\[(?:Ekstra|Extra) ([a-z0-9][a-z0-9_-]{0,31})(?: \d{4}-\d{2}-\d{2} \d{2}:\d{2})?\]",
                        re.IGNORECASE)
_ANSWER = re.compile(r"^(?:ekstra|extra)\s*(?:mode|moede|session|meeting)\s*:\s*(ja|yes|nej|no)\b")
_FOLD = str.maketrans({"ø": "o", "æ": "ae", "å": "a"})


def reference(series_id: str, start: datetime | None) -> str:
    """The subject's reference of a proposal (local time; none found: the series alone)."""
    return f"[Ekstra {series_id} {start:%Y-%m-%d %H:%M}]" if start else f"[Ekstra {series_id}]"


def find_reference(subject: str) -> str | None:
    """The series id a warning's subject names, or None. The time is for
    people: the answer takes up the proposal as it stands."""
    match = _REFERENCE.search(subject or "")
    return match[1].lower() if match else None


def read_answer(lines) -> bool | None:
    """True for "Ekstra møde: ja", False for "nej", None when no line says either."""
    for line in lines:
        match = _ANSWER.match(_fold(line))
        if match:
            return match[1] in ("ja", "yes")
    return None


def _fold(line: str) -> str:
    """Lower case, "ø" as "o", accents dropped, spaces squeezed."""
    text = unicodedata.normalize("NFKD", line.strip().lower().translate(_FOLD))
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).split())
