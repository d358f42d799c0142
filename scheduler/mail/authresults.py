"""Authentication-Results (RFC 8601): what the receiving server found.

Only the header written by the server named ``authserv_id`` counts, and of
those only the topmost: a receiving server adds its own header on top (and
should remove any earlier one bearing its name, RFC 8601 section 5), so a
header further down with the same name may have been written by the sender.
Headers from other hops are ignored. Pure functions over the raw header block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD = re.compile(rb"^authentication-results:[ \t]*((?:[^\r\n]|\r?\n[ \t])*)", re.IGNORECASE | re.MULTILINE)
_RESULT = re.compile(r"^\s*([a-z0-9_-]+)(?:\s*/\s*\d+)?\s*=\s*([a-z]+)", re.IGNORECASE)
_MAX_HEADERS = 64 * 1024  # a longer header block is not read for results


@dataclass(frozen=True)
class Results:
    """Results per method (``dmarc``, ``dkim``, ``spf`` ...), lower case."""

    methods: dict[str, tuple[str, ...]]

    def of(self, method: str) -> tuple[str, ...]:
        return self.methods.get(method, ())


def _uncomment(text: str) -> str:
    """Drop RFC 5322 comments (nested parentheses) and quoted strings' parentheses."""
    out, depth, quoted = [], 0, False
    for char in text:
        if char == '"' and depth == 0:
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
            continue
        elif not quoted and char == ")" and depth:
            depth -= 1
            continue
        if depth == 0:
            out.append(char)
    return "".join(out)


def trusted_results(raw: bytes, authserv_id: str) -> Results | None:
    """The results of the topmost header by ``authserv_id``, or None."""
    if not authserv_id:
        return None
    head = _HEADER_END.split(raw[:_MAX_HEADERS], 1)[0]
    for found in _FIELD.finditer(head):
        value = _uncomment(re.sub(r"\r?\n[ \t]", " ", found.group(1).decode("utf-8", "replace")))
        server, _, rest = value.partition(";")
        if [w.lower() for w in server.split()[:1]] != [authserv_id.lower()]:
            continue
        methods: dict[str, list[str]] = {}
        for resinfo in rest.split(";"):
            match = _RESULT.match(resinfo)
            if match:
                methods.setdefault(match.group(1).lower(), []).append(match.group(2).lower())
        return Results({m: tuple(r) for m, r in methods.items()})
    return None


def failed(results: Results) -> bool:
    """DMARC failed; or, without a DMARC verdict, DKIM and SPF both failed."""
    dmarc = results.of("dmarc")
    if "pass" in dmarc:
        return False
    if "fail" in dmarc:
        return True
    dkim, spf = results.of("dkim"), results.of("spf")
    if not dkim and not spf:
        return False  # nothing was checked: no verdict, behaviour as without the header
    return "pass" not in dkim and "pass" not in spf
