"""Closed days: Danish public holidays plus the municipality's own closures.

Pure: the ``holidays`` package is a table, not I/O. A ``ClosedDays``
answers "is this moment closed?" and "which working day comes before?".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache

import holidays

from scheduler.model import Closure


@dataclass(frozen=True)
class AnnualClosure:
    """A closure on the same month and day every year (24 Dec, 1 May from 12:00)."""

    month: int
    day: int
    name: str
    from_time: time | None = None

    def on(self, year: int) -> Closure | None:
        try:
            return Closure(date(year, self.month, self.day), self.name, self.from_time)
        except ValueError:  # 29 Feb in a common year
            return None


@lru_cache(maxsize=8)
def _public_holidays(country: str, language: str, years: tuple[int, ...]) -> dict[date, str]:
    table = holidays.country_holidays(country, years=years, language=language)
    return dict(table.items())


@dataclass(frozen=True)
class ClosedDays:
    """Weekends, public holidays of ``country`` and configured closures."""

    country: str = "DK"
    language: str = "da"
    annual: tuple[AnnualClosure, ...] = ()
    dates: tuple[Closure, ...] = ()
    working_weekdays: frozenset[int] = field(default_factory=lambda: frozenset(range(5)))

    def closure(self, day: date) -> Closure | None:
        """The closure of ``day`` if any; a whole-day one wins over a half day."""
        found = [c for c in self._closures_of(day)]
        whole = [c for c in found if c.from_time is None]
        if whole:
            return whole[0]
        return min(found, key=lambda c: c.from_time) if found else None

    def _closures_of(self, day: date):
        name = _public_holidays(self.country, self.language, (day.year,)).get(day)
        if name:
            yield Closure(day, name)
        for rule in self.annual:
            if (rule.month, rule.day) == (day.month, day.day):
                found = rule.on(day.year)
                if found:
                    yield found
        for fixed in self.dates:
            if fixed.day == day:
                yield fixed

    def is_working_day(self, day: date) -> bool:
        """A weekday with no whole-day closure (half days are working days)."""
        if day.weekday() not in self.working_weekdays:
            return False
        found = self.closure(day)
        return found is None or found.from_time is not None

    def is_open_at(self, day: date, start: time, end: time | None = None) -> bool:
        """Whether the whole span ``start``–``end`` of ``day`` lies in opening time."""
        if day.weekday() not in self.working_weekdays:
            return False
        found = self.closure(day)
        if found is None:
            return True
        if found.from_time is None:
            return False
        last = end or start
        return start < found.from_time and last <= found.from_time

    def why_closed(self, day: date) -> str | None:
        found = self.closure(day)
        if found:
            return found.name
        if day.weekday() not in self.working_weekdays:
            return "Weekend"
        return None

    def open_moment_at_or_before(self, moment: datetime) -> datetime:
        """``moment`` if it is open, else the same hour on an earlier open day."""
        candidate = moment
        for _ in range(366):
            if self.is_open_at(candidate.date(), candidate.time().replace(tzinfo=None)):
                return candidate
            candidate = _same_wall_time(candidate, candidate.date() - timedelta(days=1))
        raise ValueError(f"no open day within a year before {moment.date()}")

    def next_open_day(self, day: date, start: time, end: time) -> date:
        for offset in range(1, 367):
            candidate = day + timedelta(days=offset)
            if self.is_open_at(candidate, start, end):
                return candidate
        raise ValueError(f"no open day within a year after {day}")


def _same_wall_time(moment: datetime, day: date) -> datetime:
    """The same local wall-clock time on another day (DST-safe with zoneinfo)."""
    return datetime.combine(day, moment.timetz().replace(tzinfo=None), tzinfo=moment.tzinfo)
