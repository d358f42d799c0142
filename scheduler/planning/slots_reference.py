"""The slot finder as an obviously correct brute force: the tests' oracle.

Same signature and rules as ``slots.find_slots`` (read its docstring). Every
grid point of every day is tried against every interval of every person, and
every comparison is made in UTC, so no shortcut can hide a mistake. Far too
slow for use; ``bench/slots.py`` measures by how much.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta, timezone, tzinfo

from scheduler.model import BusyInterval, BusyKind
from scheduler.planning.closures import ClosedDays
from scheduler.planning.slots import (
    Candidate,
    SlotRequest,
    spread_indices,
    unknown_warning,
    validate,
    window_days,
)

UTC = timezone.utc
BLOCKING = {BusyKind.BUSY, BusyKind.TENTATIVE, BusyKind.OUT_OF_OFFICE}
ALL_KINDS = set(BusyKind)
DAY = timedelta(days=1)


def find_slots(
    req: SlotRequest, closed: ClosedDays, tz: tzinfo, limit: int = 5
) -> list[Candidate]:
    validate(req)
    if limit <= 0:
        return []
    found = list(_all_candidates(req, closed, tz))
    utc = lambda c: c.start.astimezone(UTC)  # noqa: E731 - same-zone comparison is wall time
    if req.strategy == "earliest":
        found.sort(key=lambda dc: (dc[0], -dc[1].optional_free, utc(dc[1])))
        return [c for _, c in found[:limit]]
    rank = lambda c: (-c.optional_free, utc(c))  # noqa: E731
    best: dict[date, Candidate] = {}
    for day, c in found:
        if day not in best or rank(c) < rank(best[day]):
            best[day] = c
    days = sorted(best)
    return [best[days[i]] for i in spread_indices(len(days), limit)]


def _all_candidates(
    req: SlotRequest, closed: ClosedDays, tz: tzinfo
) -> Iterator[tuple[date, Candidate]]:
    opening, closing = (datetime.combine(date.min, t) - datetime.min for t in req.working_hours)
    required = list(dict.fromkeys(req.required))
    optional = list(dict.fromkeys(req.optional))
    window = (req.window_start.astimezone(UTC), req.window_end.astimezone(UTC))
    busy = {a: _in_utc(seq) for a, seq in req.busy.items()}
    rooms = {r: _in_utc(seq) for r, seq in req.rooms.items()}
    for day in window_days(req, tz):
        offset = timedelta(0)
        while offset < DAY:
            start_offset, end_offset = offset, offset + req.duration
            offset += req.grid
            if start_offset < opening or end_offset > closing:
                continue
            wall = (datetime.min + start_offset).time()
            wall_end = (datetime.min + end_offset).time()
            start = datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)
            if start.astimezone(tz).replace(tzinfo=None) != datetime.combine(day, wall):
                continue  # the wall time does not exist (spring-forward gap)
            end = start + req.duration
            if start < window[0] or end > window[1]:
                continue
            if not closed.is_open_at(day, wall, wall_end):
                continue
            lo, hi = start - req.buffer, end + req.buffer
            if any(_overlaps(busy.get(a, []), lo, hi, BLOCKING) for a in required):
                continue
            free_rooms = [r for r, seq in rooms.items() if not _overlaps(seq, lo, hi, ALL_KINDS)]
            if rooms and not free_rooms:
                continue
            unknown = [
                a for a in required
                if a not in busy or _overlaps(busy[a], lo, hi, {BusyKind.UNKNOWN})
            ]
            who = tuple(
                a for a in optional if a in busy and not _overlaps(busy[a], lo, hi, ALL_KINDS)
            )
            yield day, Candidate(
                start=start.astimezone(tz),
                end=end.astimezone(tz),
                optional_free=len(who),
                optional_free_who=who,
                room=free_rooms[0] if free_rooms else None,
                warnings=tuple(unknown_warning(a, req.language) for a in unknown),
            )


Utc = list[tuple[datetime, datetime, BusyKind]]


def _in_utc(seq: Sequence[BusyInterval]) -> Utc:
    """The intervals in UTC, where comparing is exact (within one zone it is wall time)."""
    return [(iv.start.astimezone(UTC), iv.end.astimezone(UTC), iv.kind) for iv in seq]


def _overlaps(seq: Utc, lo: datetime, hi: datetime, kinds: set) -> bool:
    """Whether a proper interval of one of ``kinds`` overlaps [lo, hi) (all in UTC)."""
    for s, e, kind in seq:
        if kind in kinds and s < e and s < hi and e > lo:
            return True
    return False
