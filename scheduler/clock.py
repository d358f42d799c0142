"""Where "now" comes from: the system clock, or a fixed or simulated time.

The core never reads a clock; services take a ``Clock`` so that ``--now``,
``SPARRING_NOW`` and ``sparring simulate`` can run them at any time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from scheduler.errors import UserError


class SystemClock:
    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz

    def now(self) -> datetime:
        return datetime.now(self.tz)


@dataclass
class FixedClock:
    """A clock that stands still until moved (``--now``, tests, simulation)."""

    current: datetime

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta

    def set(self, moment: datetime) -> None:
        self.current = moment


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
