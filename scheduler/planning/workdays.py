"""Periods counted in working days (pure): "within 10 working days".

``is_working_day`` is ``ClosedDays.is_working_day`` (weekends and the
configured closures are not working days); it is passed in so this module
reads no configuration and no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

WorkingDay = Callable[[date], bool]
_LIMIT = 3660  # days searched before giving up: a calendar closed for ten years is a configuration error


def after(first: date, count: int, is_working_day: WorkingDay) -> date:
    """The ``count``-th working day after ``first`` (``first`` itself not counted)."""
    day, seen = first, 0
    for _ in range(_LIMIT):
        if seen >= count:
            return day
        day += timedelta(days=1)
        seen += is_working_day(day)
    raise ValueError("no working day found within ten years")


def window(first: date, count: int, is_working_day: WorkingDay) -> tuple[date, date]:
    """(start, last) of the first ``count`` working days on or after ``first``."""
    start = first
    for _ in range(_LIMIT):
        if is_working_day(start):
            return start, after(start, count - 1, is_working_day)
        start += timedelta(days=1)
    raise ValueError("no working day found within ten years")
