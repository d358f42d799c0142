"""The case reference a mail about a case carries in its subject (pure).

"K-" and 4 to 8 letters or digits, e.g. ``[K-7F3Q]``: too short to be a
CPR number, and made by sparring, so it names no person.
"""

from __future__ import annotations

import re

CASE_REFERENCE = re.compile(r"\bK-[A-Z0-9]{4,8}\b")


def case_reference(subject: str) -> str | None:
    """The case reference a subject carries (upper case), or None."""
    found = CASE_REFERENCE.search(subject.upper())
    return found.group(0) if found else None
