"""Who may send agenda items: full addresses or exact domains.

``kommune.example`` admits ``a@kommune.example`` but not
``a@kommune.example.evil.example`` nor ``a@evilkommune.example``; a
sub-domain must be listed on its own.
"""

from __future__ import annotations

from collections.abc import Iterable

from scheduler.mail.headerforms import VALID_ADDRESS as _VALID_ADDRESS


class Allowlist:
    def __init__(self, entries: Iterable[str]) -> None:
        cleaned = [e.strip().lower() for e in entries if e.strip()]
        self.addresses = frozenset(e for e in cleaned if "@" in e)
        self.domains = frozenset(e.lstrip("@") for e in cleaned if "@" not in e)

    def permits(self, address: str | None) -> bool:
        """Whether ``address``, one syntactically valid address and nothing
        else (``a@x.example <evil@y.org>`` is not), is on the list."""
        if not address or not _VALID_ADDRESS.fullmatch(address):
            return False
        address = address.lower()
        local, domain = address.split("@")
        if not local or not domain:
            return False
        return address in self.addresses or domain in self.domains
