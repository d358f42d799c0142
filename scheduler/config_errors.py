"""Turning a pydantic validation error into one sentence a user can act on:
the file, the line (tomllib keeps no positions, so it is found in the text),
the key, and what is allowed there."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError


def describe(path: Path, text: str, exc: ValidationError) -> str:
    """One sentence for the first problem: file, line, key, what is allowed."""
    error = exc.errors()[0]
    loc = tuple(part for part in error["loc"] if not _is_union_tag(part))
    key = _dotted(loc) or "(top level)"
    line = locate(text, loc)
    where = f"{path}: line {line}: " if line else f"{path}: "
    return f"{where}{key}: {_explain(error)}."


def _is_union_tag(part: object) -> bool:
    return isinstance(part, str) and ("[" in part or part in {"function-after", "constrained-str"})


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _explain(error: dict) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return "unknown key; see config/README.md for the keys allowed here"
    if kind == "missing":
        return "required key is missing"
    if kind == "string_pattern_mismatch":
        return f"{error['input']!r} has the wrong form ({_pattern_hint(error)})"
    if kind in ("literal_error", "enum"):
        return f"{error['input']!r} is not allowed; {msg[0].lower() + msg[1:]}"
    msg = msg.removeprefix("Value error, ")
    return f"{msg} (got {error['input']!r})" if "input" in error and kind != "value_error" else msg


def _pattern_hint(error: dict) -> str:
    pattern = error.get("ctx", {}).get("pattern", "")
    if "[0-5]" in pattern:
        return "use HH:MM, e.g. 12:00"
    if "@" in pattern:
        return "use a mail address such as name@kommune.example"
    if "0[1-9]|1[0-2]" in pattern:
        return "use MM-DD, e.g. 12-24"
    return f"must match {pattern}"


def locate(text: str, loc: tuple) -> int | None:
    """Best-effort line of a key path in TOML text (tomllib keeps no positions)."""
    lines = text.splitlines()
    counters: dict[str, int] = {}
    seen_tables: list[tuple[str, int, int]] = []  # (name, index, line)
    for number, line in enumerate(lines, 1):
        header = re.match(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?", line)
        if header:
            name = header.group(2)
            index = counters.get(name, 0)
            counters[name] = index + 1
            seen_tables.append((name, index if header.group(1) == "[[" else -1, number))
    want_table, want_index, rest = _split_loc(loc)
    start, end = 1, len(lines) + 1
    for i, (name, index, number) in enumerate(seen_tables):
        if name == want_table and index in (want_index, -1):
            start = number
            end = seen_tables[i + 1][2] if i + 1 < len(seen_tables) else len(lines) + 1
            break
    else:
        if want_table:
            rest = (want_table, *rest)
    for key in [k for k in rest if isinstance(k, str)][:1] or []:
        for number in range(start, end):
            if re.match(rf"^\s*{re.escape(key)}\s*=", lines[number - 1]):
                return number
    return start if want_table and start > 1 else None


def _split_loc(loc: tuple) -> tuple[str | None, int, tuple]:
    if not loc:
        return None, -1, ()
    head, *tail = loc
    if tail and isinstance(tail[0], int):
        return str(head), tail[0], tuple(tail[1:])
    return str(head), -1, tuple(tail)
