"""Sessions of a series over any date range, with deadlines and closures.

The rule: weekly series meet on a weekday in weeks of a given ISO parity;
monthly series on the n-th such weekday of the month. A session on a closed
day is kept, cancelled with the closure's name, or moved to the next open
day; its deadline is N days or the given weekday before it, at a fixed hour,
moved back to an earlier open day when it lands on a closed one.

Extra sessions (the coordinators' answer to a backlog warning) are given to
the planner as sessions; they are listed with the rule's, with note "ekstra".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, tzinfo

from scheduler.model import Cadence, OnClosed, Series, Session, SessionStatus
from scheduler.planning.closures import ClosedDays

# A moved session lands at most this far after its rule date.
_MOVE_REACH = timedelta(days=31)
EXTRA_NOTE = "ekstra"


def rule_dates(series: Series, first: date, last: date) -> Iterator[date]:
    """The dates the series' rule gives in ``first``..``last``, closures ignored."""
    if series.cadence is Cadence.WEEKLY:
        day = first + timedelta(days=(series.weekday - first.weekday()) % 7)
        while day <= last:
            if series.week_parity.admits(day):
                yield day
            day += timedelta(days=7)
        return
    year, month = first.year, first.month
    while date(year, month, 1) <= last:
        day = monthly_date(series, year, month)
        if day is not None and first <= day <= last:
            yield day
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def monthly_date(series: Series, year: int, month: int) -> date | None:
    """The ``nth`` day of the month on the series' weekday and week parity."""
    day = date(year, month, 1)
    day += timedelta(days=(series.weekday - day.weekday()) % 7)
    seen = 0
    while day.month == month:
        if series.week_parity.admits(day):
            seen += 1
            if seen == series.nth:
                return day
        day += timedelta(days=7)
    return None


def deadline_for(series: Series, session_day: date, tz: tzinfo, closed: ClosedDays) -> datetime:
    rule = series.deadline
    if rule.days_before is not None:
        day = session_day - timedelta(days=rule.days_before)
    else:
        back = (session_day.weekday() - rule.weekday_before) % 7 or 7
        day = session_day - timedelta(days=back)
    return closed.open_moment_at_or_before(datetime.combine(day, rule.at, tzinfo=tz))


def extra_session(series: Series, start: datetime, created_at: datetime, closed: ClosedDays) -> Session:
    """An extra session of ``series`` at ``start``. Its agenda deadline is the
    day before at the series' deadline hour (moved back off a closed day), but
    never before the session was added: the agenda then goes out at once."""
    tz = start.tzinfo
    rule = series.deadline
    day_before = datetime.combine(start.date() - timedelta(days=1), rule.at, tzinfo=tz)
    deadline = max(closed.open_moment_at_or_before(day_before), created_at.astimezone(tz))
    return Session(series_id=series.id, rule_date=start.date(), start=start, end=start + series.duration,
                   deadline=min(deadline, start), capacity=series.capacity, note=EXTRA_NOTE, extra=True)


@dataclass(frozen=True)
class Planner:
    """Plans the sessions of the configured series, and holds the extra ones added."""

    series: tuple[Series, ...]
    closed: ClosedDays
    tz: tzinfo
    extras: tuple[Session, ...] = ()

    def with_extras(self, stored) -> Planner:
        """This planner with the extra sessions stored as (series id, start,
        added at); those of a series no longer configured are left out."""
        series = {s.id: s for s in self.series}
        extras = (extra_session(series[sid], start.astimezone(self.tz), added, self.closed)
                  for sid, start, added in stored if sid in series)
        return replace(self, extras=tuple(sorted(extras, key=lambda s: (s.start, s.series_id))))

    def get_series(self, series_id: str) -> Series:
        for series in self.series:
            if series.id == series_id:
                return series
        raise KeyError(series_id)

    def sessions(self, first: date, last: date, series_id: str | None = None) -> list[Session]:
        """Sessions whose start date lies in ``first``..``last``, sorted by start."""
        chosen = [s for s in self.series if series_id in (None, s.id)]
        found = [
            session
            for series in chosen
            for day in rule_dates(series, first - _MOVE_REACH, last)
            if first <= (session := self.rule_session(series, day)).start.date() <= last
        ]
        found += [s for s in self.extras
                  if series_id in (None, s.series_id) and first <= s.start.date() <= last]
        return sorted(found, key=lambda s: (s.start, s.series_id))

    def session_on(self, series: Series, rule_day: date) -> Session:
        """The session keyed by ``rule_day``: an extra one added on that day, else the rule's."""
        for extra in self.extras:
            if extra.series_id == series.id and extra.rule_date == rule_day:
                return extra
        return self.rule_session(series, rule_day)

    def rule_session(self, series: Series, rule_day: date) -> Session:
        """The session the rule gives on ``rule_day``, after closures."""
        day, status, note = rule_day, SessionStatus.PLANNED, None
        start_t = series.start
        end_t = (datetime.combine(rule_day, start_t) + series.duration).time()
        if not self.closed.is_open_at(rule_day, start_t, end_t):
            reason = self.closed.why_closed(rule_day) or "Lukket"
            if series.on_closed is OnClosed.MOVE:
                day = self.closed.next_open_day(rule_day, start_t, end_t)
                note = f"Flyttet fra {rule_day.isoformat()} ({reason})"
            else:
                status, note = SessionStatus.CANCELLED, reason
        start = datetime.combine(day, start_t, tzinfo=self.tz)
        return Session(
            series_id=series.id,
            rule_date=rule_day,
            start=start,
            end=start + series.duration,
            deadline=deadline_for(series, day, self.tz, self.closed),
            capacity=series.capacity,
            status=status,
            note=note,
        )

    def upcoming(self, series_id: str, after: datetime, horizon_days: int = 800) -> Iterator[Session]:
        """Sessions of one series starting after ``after``, lazily, in order."""
        series = self.get_series(series_id)
        first = after.date()
        while horizon_days > 0:
            span = min(horizon_days, 92)
            last = first + timedelta(days=span)
            for session in self.sessions(first, last, series.id):
                if session.start > after:
                    yield session
            first, horizon_days = last + timedelta(days=1), horizon_days - span - 1
