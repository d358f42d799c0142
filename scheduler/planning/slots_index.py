"""The slot finder's fast path: busy time as merged integer spans (issue 6).

Turning an aware datetime into an integer (UTC microseconds) is the costly
step, about a microsecond each, while comparing two datetimes is cheap. So
intervals are converted only where they matter: the required people's and the
rooms' intervals in the window once, merged into sorted disjoint spans that a
bisect answers; the optional people's only for the few days whose candidates
are ranked, after a cheap datetime pre-filter. With 150 people over six
months most optional intervals are never converted.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING

from scheduler.model import BusyInterval, BusyKind
from scheduler.planning.closures import ClosedDays

if TYPE_CHECKING:
    from scheduler.planning.slots import SlotRequest

BLOCKING = frozenset({BusyKind.BUSY, BusyKind.TENTATIVE, BusyKind.OUT_OF_OFFICE})
_US = timedelta(microseconds=1)
# Comparing datetimes that share a tzinfo compares wall time, which a DST
# change shifts by up to an hour: pre-filters widen their bounds by this.
_MARGIN = timedelta(hours=3)


def to_us(moment: datetime) -> int:
    """UTC microseconds since the epoch (exact for any aware datetime)."""
    if moment.tzinfo is None:
        raise ValueError("busy intervals must be timezone-aware")
    return round(moment.timestamp() * 1_000_000)


def near(seq: Iterable[BusyInterval], lo: datetime, hi: datetime, kinds=None):
    """(start, end) in microseconds of the proper intervals roughly within lo..hi."""
    found = []
    for iv in seq:
        if iv.start < hi and iv.end > lo and (kinds is None or iv.kind in kinds):
            s, e = to_us(iv.start), to_us(iv.end)
            if s < e:
                found.append((s, e))
    return found


class Spans:
    """Sorted, merged, disjoint half-open spans; ``hits`` by bisect."""

    def __init__(self, pairs: list[tuple[int, int]]) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        for s, e in sorted(pairs):
            if self.ends and s <= self.ends[-1]:
                self.ends[-1] = max(self.ends[-1], e)
            else:
                self.starts.append(s)
                self.ends.append(e)

    def hits(self, lo: int, hi: int) -> bool:
        """Whether any span overlaps [lo, hi)."""
        i = bisect_right(self.ends, lo)
        return i < len(self.starts) and self.starts[i] < hi


@dataclass(frozen=True)
class DayPoint:
    """A start that passed every rule but the ranking."""

    start: datetime
    s_us: int
    lo: int  # padded span in UTC microseconds
    hi: int
    room: str | None


class SlotIndex:
    """The request's busy time, prepared for many cheap questions."""

    def __init__(self, req: SlotRequest, closed: ClosedDays, tz: tzinfo) -> None:
        self.req, self.closed, self.tz = req, closed, tz
        self.dur, self.buf = req.duration // _US, req.buffer // _US
        self.win = (to_us(req.window_start), to_us(req.window_end))
        lo = req.window_start - req.buffer - _MARGIN
        hi = req.window_end + req.buffer + _MARGIN
        required = list(dict.fromkeys(req.required))
        pairs = [p for a in required for p in near(req.busy.get(a, ()), lo, hi, BLOCKING)]
        self.blocked = Spans(pairs)
        self.unknown = {
            a: Spans(near(req.busy[a], lo, hi, {BusyKind.UNKNOWN})) if a in req.busy else None
            for a in required
        }
        self.rooms = [(name, Spans(near(seq, lo, hi))) for name, seq in req.rooms.items()]
        self.grid = _wall_grid(req)

    def valid_points(self, day: date) -> list[DayPoint]:
        """The day's starts that are open, in the window, free for the required, with a room."""
        points = []
        for wall, wall_end in self.grid:
            start = datetime.combine(day, wall, tzinfo=self.tz)
            s = to_us(start)
            lo, hi = s - self.buf, s + self.dur + self.buf
            if s < self.win[0] or s + self.dur > self.win[1] or self.blocked.hits(lo, hi):
                continue
            if not self.closed.is_open_at(day, wall, wall_end):
                continue
            room = self._free_room(lo, hi)
            if room is not False:
                points.append(DayPoint(start, s, lo, hi, room))
        return points

    def _free_room(self, lo: int, hi: int) -> str | None | bool:
        """The first free room, None without rooms, False when all are taken."""
        if not self.rooms:
            return None
        return next((name for name, spans in self.rooms if not spans.hits(lo, hi)), False)

    def optional_free(self, points: Sequence[DayPoint]) -> list[tuple[str, ...]]:
        """Per point, the optional people (in request order) free over its padded span."""
        lo = min(p.start for p in points) - self.req.buffer - _MARGIN
        hi = max(p.start for p in points) + self.req.duration + self.req.buffer + _MARGIN
        free: list[list[str]] = [[] for _ in points]
        for address in dict.fromkeys(self.req.optional):
            seq = self.req.busy.get(address)
            if seq is None:
                continue  # unknown: never counted as free
            spans = near(seq, lo, hi)
            for i, p in enumerate(points):
                if not any(s < p.hi and e > p.lo for s, e in spans):
                    free[i].append(address)
        return [tuple(f) for f in free]

    def unknown_required(self, point: DayPoint) -> list[str]:
        """Required addresses whose free/busy is unknown over the point's padded span."""
        return [
            a for a, spans in self.unknown.items() if spans is None or spans.hits(point.lo, point.hi)
        ]

    def end_of(self, point: DayPoint) -> datetime:
        utc = point.start.astimezone(timezone.utc) + self.req.duration
        return utc.astimezone(self.tz)


def _wall_grid(req: SlotRequest) -> list[tuple[time, time]]:
    """(start, end) wall times on the grid from midnight within working hours."""
    first, last = (datetime.combine(date.min, t) - datetime.min for t in req.working_hours)
    k0 = -(-first // req.grid)
    k1 = (last - req.duration) // req.grid if last >= req.duration else -1
    return [
        ((datetime.min + k * req.grid).time(), (datetime.min + k * req.grid + req.duration).time())
        for k in range(k0, k1 + 1)
    ]
