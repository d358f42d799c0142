"""Free/busy through Graph's ``getSchedule``: splitting and merging, no I/O.

One getSchedule request names at most 20 schedules and covers a window
shorter than 42 days (the older documented limits; the current ones are
wider), so a query for N people over D days is ceil(N/20) x ceil(D/41)
requests, sent in ``$batch`` requests of 20. The answers are clipped to
their window, merged per person, and touching intervals of one kind are
joined, so a meeting cut at a window's edge comes back whole.

``scheduleItems`` statuses map to ``BusyKind``: busy, tentative, oof and
unknown as named; free and workingElsewhere are free time. A person Graph
answers with an ``error`` for, or leaves out, is UNKNOWN over the window,
never free.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from scheduler.graph.events import graph_time, parse_time
from scheduler.model import BusyInterval, BusyKind
from scheduler.ports import chunked

MAX_SCHEDULES = 20  # getSchedule: schedules per request
MAX_WINDOW = timedelta(days=41)  # getSchedule: a window shorter than 42 days
VIEW_INTERVAL = 60  # minutes; sparring reads scheduleItems, the view only costs bytes
_KINDS = {"busy": BusyKind.BUSY, "tentative": BusyKind.TENTATIVE, "oof": BusyKind.OUT_OF_OFFICE,
          "unknown": BusyKind.UNKNOWN}  # free and workingElsewhere: free


@dataclass(frozen=True)
class ScheduleQuery:
    """One getSchedule request: some people over one window."""

    schedules: tuple[str, ...]
    start: datetime
    end: datetime

    def body(self, tz: tzinfo) -> dict:
        return {"schedules": list(self.schedules), "startTime": graph_time(self.start, tz),
                "endTime": graph_time(self.end, tz), "availabilityViewInterval": VIEW_INTERVAL}


def windows(start: datetime, end: datetime, longest: timedelta = MAX_WINDOW) -> list[tuple[datetime, datetime]]:
    """``start``..``end`` cut into consecutive windows of at most ``longest``."""
    out = []
    while start < end:
        out.append((start, min(start + longest, end)))
        start += longest
    return out


def queries(addresses: Sequence[str], start: datetime, end: datetime) -> list[ScheduleQuery]:
    """The requests for ``addresses`` (each once, whatever its case) over the window."""
    people: dict[str, str] = {}
    for address in addresses:
        people.setdefault(address.lower(), address)
    return [ScheduleQuery(tuple(batch), first, last)
            for first, last in windows(start, end) for batch in chunked(people.values(), MAX_SCHEDULES)]


def intervals(info: Mapping, start: datetime, end: datetime, tz: tzinfo) -> list[BusyInterval]:
    """One ``scheduleInformation`` as busy intervals clipped to ``start``..``end``."""
    if info.get("error"):
        return [BusyInterval(start, end, BusyKind.UNKNOWN)]
    out = []
    for item in info.get("scheduleItems") or ():
        kind = _KINDS.get(str(item.get("status", "")).lower())
        if kind is None:
            continue
        first = max(parse_time(item["start"], tz), start)
        last = min(parse_time(item["end"], tz), end)
        if first < last:
            out.append(BusyInterval(first, last, kind))
    return out


def answers_to_busy(addresses: Sequence[str], answers: Iterable[tuple[ScheduleQuery, Sequence[Mapping]]],
                    tz: tzinfo) -> dict[str, list[BusyInterval]]:
    """Every request's ``value`` merged per address as the caller spelt it."""
    found: dict[str, list[BusyInterval]] = {a.lower(): [] for a in addresses}
    for query, value in answers:
        by_id = {str(info.get("scheduleId", "")).lower(): info for info in value}
        for person in query.schedules:
            info = by_id.get(person.lower(), {"error": {"responseCode": "NotAnswered"}})
            found[person.lower()].extend(intervals(info, query.start, query.end, tz))
    return {a: coalesce(found[a.lower()]) for a in addresses}


def coalesce(spans: Iterable[BusyInterval]) -> list[BusyInterval]:
    """Overlapping or touching intervals of one kind joined; sorted by start."""
    spans = list(spans)
    out: list[BusyInterval] = []
    for kind in BusyKind:
        current: BusyInterval | None = None
        for span in sorted((s for s in spans if s.kind is kind), key=lambda s: (s.start, s.end)):
            if current is not None and span.start <= current.end:
                current = BusyInterval(current.start, max(current.end, span.end), kind)
                continue
            if current is not None:
                out.append(current)
            current = span
        if current is not None:
            out.append(current)
    return sorted(out, key=lambda s: (s.start, s.end, s.kind.value))
