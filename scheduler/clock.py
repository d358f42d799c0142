"""Where "now" comes from: the system clock, or a fixed, simulated or shifted time.

The core never reads a clock; services take a ``Clock`` so that ``--now``,
``SPARRING_NOW`` and ``sparring simulate`` can run them at any time.
Arrival times that come from the wall clock (a file's mtime) are put on
the clock's timeline with ``from_wall``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

from scheduler.errors import UserError


class SystemClock:
    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz

    def now(self) -> datetime:
        return datetime.now(self.tz)

    def from_wall(self, moment: datetime) -> datetime:
        return moment


class RunningClock:
    """``--now T``: starts at ``T`` and runs on with real time, so deadlines
    after ``T`` come, and a file written now is dated on ``T``'s timeline."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self._began = time.monotonic()
        self.offset = start - datetime.now(timezone.utc)  # timeline minus wall clock

    def now(self) -> datetime:
        # In UTC: an aware datetime plus a timedelta is wall-time arithmetic, blind to DST.
        elapsed = timedelta(seconds=time.monotonic() - self._began)
        return (self.start.astimezone(timezone.utc) + elapsed).astimezone(self.start.tzinfo)

    def from_wall(self, moment: datetime) -> datetime:
        return (moment.astimezone(timezone.utc) + self.offset).astimezone(self.start.tzinfo)


@dataclass
class FixedClock:
    """A clock that stands still until moved (tests, simulation). Tests set
    the file times that stand for arrival on its timeline, so wall-clock
    times are taken as they are."""

    current: datetime

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta

    def set(self, moment: datetime) -> None:
        self.current = moment

    def from_wall(self, moment: datetime) -> datetime:
        return moment


def wall_offset(clock) -> timedelta:
    """How far the clock's timeline runs ahead of the wall clock (0 unless
    ``--now``). Add or subtract it in UTC, never to a local time."""
    wall = datetime.now(timezone.utc)
    return clock.from_wall(wall) - wall


def on_the_wall(moment: datetime, offset: timedelta) -> datetime:
    """The wall-clock time (UTC) at which a clock ``offset`` ahead shows ``moment``."""
    return moment.astimezone(timezone.utc) - offset


def parse_now(text: str, tz: tzinfo) -> datetime:
    """An ISO date-time; without an offset it is local time in ``tz``."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(
            f"--now/SPARRING_NOW: {text!r} is not an ISO date-time; use e.g. 2027-01-04T09:00."
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=tz)
    return moment.astimezone(tz)
