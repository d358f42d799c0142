"""The slot finder: the best common free slots for a meeting (issue 6, item 1).

Pure: no I/O, no clock. ``slots_reference.find_slots`` states the same rules
as a brute force; the property tests hold the two to the same answers.

The rules, exactly:

* A candidate starts on the grid, counted in local wall time from midnight,
  at or after the working hours' start, and its wall-clock end (start wall
  time + duration) is at or before their end. The aware start is
  ``datetime.combine(day, wall, tz)`` (fold 0: in an autumn night's repeated
  hour the first occurrence; wall times in the spring-forward gap are no
  grid points); the end is start + duration in elapsed time.
  Both only matter if working hours span a DST change, never so in Denmark.
* It lies inside the window, and ``ClosedDays.is_open_at`` holds for its whole
  wall-clock span: weekends, holidays and afternoons of half days are closed.
* Its padded span ``[start - buffer, end + buffer)`` overlaps no BUSY,
  TENTATIVE or OOF interval of any required person. Intervals are half-open;
  one whose end is not after its start is ignored.
* UNKNOWN (no access) for a required person does not block: the candidate is
  kept with a warning naming the address, rather than treated as silently
  free. A required address missing from ``busy`` is unknown throughout.
* An optional person is free when no interval of any kind (UNKNOWN included)
  overlaps the padded span; an optional address missing from ``busy`` is not.
* If ``rooms`` is given, the first room in its order with no interval of any
  kind over the padded span is taken; without a free room there is no
  candidate. Without rooms ``room`` is None.
* An address named twice counts once.

Ranking. ``earliest`` (the default, the CLI contract): candidates are grouped
by local day; the earliest day with any candidate comes first, within a day
more optional people free comes first, then the earlier start; ``limit``
candidates are taken in that order (several from one day, then the next day).
Warnings do not change the rank. ``spread``: one candidate per day, that day's
best by the same rule; of the n days that have one, ``spread_indices`` picks
``limit`` spread evenly from the first to the last, returned in date order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from scheduler.errors import UserError
from scheduler.model import SlotRequest
from scheduler.planning.closures import ClosedDays
from scheduler.planning.slots_index import DayPoint, SlotIndex

_WARNINGS = {
    "da": "Ledig/optaget for {address} kunne ikke ses; tidspunktet er ikke bekræftet ledigt.",
    "en": "Free/busy for {address} could not be seen; the time is not confirmed free.",
}


@dataclass(frozen=True)
class Candidate:
    start: datetime
    end: datetime
    optional_free: int
    optional_free_who: tuple[str, ...]
    room: str | None
    warnings: tuple[str, ...]


def unknown_warning(address: str, language: str = "da") -> str:
    """The warning a candidate carries when ``address``'s free/busy is unknown."""
    return _WARNINGS.get(language, _WARNINGS["da"]).format(address=address)


def spread_indices(n: int, limit: int) -> list[int]:
    """``limit`` of ``range(n)`` spread evenly, first and last included.

    Index i of the pick is round(i * (n - 1) / (limit - 1)), halves rounded
    up, computed in integers. All of them when n <= limit.
    """
    if n <= limit:
        return list(range(n))
    if limit <= 1:
        return list(range(limit))
    den = 2 * (limit - 1)
    return [(2 * i * (n - 1) + limit - 1) // den for i in range(limit)]


def validate(req: SlotRequest) -> None:
    """Raise ``UserError`` for a request no answer can be given to."""
    for name in ("window_start", "window_end"):
        if getattr(req, name).utcoffset() is None:
            raise UserError(f"slot search: {name} must carry a time zone.")
    if req.duration <= timedelta(0) or req.grid <= timedelta(0):
        raise UserError("slot search: the duration and the grid must be positive.")
    if req.buffer < timedelta(0):
        raise UserError("slot search: the buffer cannot be negative.")
    if req.strategy not in ("earliest", "spread"):
        raise UserError(f"slot search: unknown strategy {req.strategy!r}; use earliest or spread.")


def window_days(req: SlotRequest, tz: tzinfo) -> list[date]:
    """The local dates the window touches, in order."""
    first = req.window_start.astimezone(tz).date()
    last = req.window_end.astimezone(tz).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def find_slots(
    req: SlotRequest, closed: ClosedDays, tz: tzinfo, limit: int = 5
) -> list[Candidate]:
    """The best ``limit`` candidates by the rules above; [] when none exists."""
    validate(req)
    if limit <= 0:
        return []
    index = SlotIndex(req, closed, tz)
    days = [d for d in window_days(req, tz) if closed.is_working_day(d)]
    if req.strategy == "spread":
        found = [pts for pts in map(index.valid_points, days) if pts]
        chosen = [found[i] for i in spread_indices(len(found), limit)]
        return [ranked[0] for ranked in _ranked_days(index, chosen, req)]
    needed: list[list[DayPoint]] = []  # the earliest days that hold ``limit`` candidates
    for day in days:
        points = index.valid_points(day)
        if points:
            needed.append(points)
            if sum(map(len, needed)) >= limit:
                break
    return [c for ranked in _ranked_days(index, needed, req) for c in ranked][:limit]


def _ranked_days(
    index: SlotIndex, days: list[list[DayPoint]], req: SlotRequest
) -> list[list[Candidate]]:
    """Each day's candidates, most optional people free first, then earliest."""
    out = []
    for points, free_who in zip(days, index.optional_free(days)):
        order = sorted(range(len(points)), key=lambda i: (-len(free_who[i]), points[i].s_us))
        out.append([_candidate(points[i], free_who[i], index, req) for i in order])
    return out


def _candidate(
    point: DayPoint, who: tuple[str, ...], index: SlotIndex, req: SlotRequest
) -> Candidate:
    return Candidate(
        start=point.start,
        end=index.end_of(point),
        optional_free=len(who),
        optional_free_who=who,
        room=point.room,
        warnings=tuple(unknown_warning(a, req.language) for a in point.unknown),
    )
