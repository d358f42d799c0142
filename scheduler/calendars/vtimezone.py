"""VTIMEZONE blocks written with yearly RRULEs, the form Outlook reads.

icalendar's ``add_missing_timezones()`` writes one RDATE per transition,
which Outlook misreads. Here the rule is derived from zoneinfo: the
transitions of a reference year are turned into "the n-th (or last)
weekday of the month at this local time", and the rule is checked against
the following years. A zone whose rule cannot be expressed that way (one
that changes its rule, or has more than two transitions a year) is refused
with one sentence rather than written wrongly.

``vtimezone`` builds a new component on every call (a caller may change
it); ``vtimezone_ical`` keeps the serialised bytes per zone and year.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from icalendar import Timezone, TimezoneDaylight, TimezoneStandard

from scheduler.errors import ConfigError

_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_CHECK_YEARS = 6  # the rule must hold this many years from the reference year


@dataclass(frozen=True)
class Transition:
    """One yearly change of offset, as an RRULE expresses it."""

    month: int
    weekday: int  # 0 = Monday
    nth: int  # 1..4, or -1 for the last
    local: datetime  # wall time before the change, in the old offset (naive)
    offset_from: timedelta
    offset_to: timedelta
    name: str
    daylight: bool

    @property
    def byday(self) -> str:
        return f"{self.nth}{_DAYS[self.weekday]}"


def vtimezone(tz: ZoneInfo, year: int) -> Timezone:
    """A VTIMEZONE for ``tz`` valid from ``year`` on (for a few years at least)."""
    name = str(tz.key)
    transitions = yearly_transitions(tz, year)
    for later in range(year + 1, year + _CHECK_YEARS):
        if [_rule(t) for t in yearly_transitions(tz, later)] != [_rule(t) for t in transitions]:
            raise ConfigError(
                f"time zone {name}: its daylight-saving rule changes after {year}; "
                "use a zone with a fixed yearly rule such as Europe/Copenhagen."
            )
    component = Timezone()
    component.add("tzid", name)
    if not transitions:
        component.add_component(_fixed(tz, year))
    for transition in transitions:
        component.add_component(_observance(transition))
    return component


@lru_cache(maxsize=64)
def vtimezone_ical(tz: ZoneInfo, year: int) -> bytes:
    """``vtimezone(tz, year).to_ical()``, kept: bytes nobody can change."""
    return vtimezone(tz, year).to_ical()


def yearly_transitions(tz: ZoneInfo, year: int) -> list[Transition]:
    """The offset changes of ``tz`` in ``year``."""
    return list(_scan(tz, year))


@lru_cache(maxsize=64)
def _scan(tz: ZoneInfo, year: int) -> tuple[Transition, ...]:
    """Day by day in UTC, then bisected to the minute (zoneinfo lists no transitions)."""
    found: list[Transition] = []
    day = datetime(year, 1, 1, tzinfo=timezone.utc)
    end = datetime(year + 1, 1, 1, tzinfo=timezone.utc)
    while day < end:
        following = day + timedelta(days=1)
        if day.astimezone(tz).utcoffset() != following.astimezone(tz).utcoffset():
            moment = _bisect(tz, day, following)
            found.append(_transition(tz, moment, (moment - timedelta(minutes=1)).astimezone(tz),
                                     moment.astimezone(tz)))
        day = following
    if len(found) not in (0, 2):
        raise ConfigError(f"time zone {tz.key}: {len(found)} offset changes in {year}; "
                          "only zones with none or two a year are supported.")
    return tuple(found)


def _bisect(tz: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """The first minute after ``low`` with the offset ``high`` has."""
    before = low.astimezone(tz).utcoffset()
    while high - low > timedelta(minutes=1):
        middle = low + (high - low) / 2
        middle = middle.replace(second=0, microsecond=0)
        if middle.astimezone(tz).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high


def _transition(tz: ZoneInfo, at_utc: datetime, before: datetime, after: datetime) -> Transition:
    offset_from, offset_to = before.utcoffset(), after.utcoffset()
    assert offset_from is not None and offset_to is not None
    local = (at_utc + offset_from).replace(tzinfo=None)
    day = local.date()
    last = (day + timedelta(days=7)).month != day.month
    nth = -1 if last else (day.day - 1) // 7 + 1
    return Transition(
        month=day.month,
        weekday=day.weekday(),
        nth=nth,
        local=local,
        offset_from=offset_from,
        offset_to=offset_to,
        name=after.tzname() or "",
        daylight=bool(after.dst()),
    )


def _rule(t: Transition) -> tuple:
    return (t.month, t.weekday, t.nth, t.local.time(), t.offset_from, t.offset_to)


def _observance(t: Transition) -> TimezoneStandard | TimezoneDaylight:
    part = TimezoneDaylight() if t.daylight else TimezoneStandard()
    part.add("dtstart", _first_in_1970(t))
    part.add("rrule", {"freq": "yearly", "bymonth": t.month, "byday": t.byday})
    part.add("tzoffsetfrom", t.offset_from)
    part.add("tzoffsetto", t.offset_to)
    if t.name:
        part.add("tzname", t.name)
    return part


def _fixed(tz: ZoneInfo, year: int) -> TimezoneStandard:
    sample = datetime(year, 1, 1, 12, tzinfo=tz)
    part = TimezoneStandard()
    part.add("dtstart", datetime(1970, 1, 1))
    part.add("tzoffsetfrom", sample.utcoffset())
    part.add("tzoffsetto", sample.utcoffset())
    if sample.tzname():
        part.add("tzname", sample.tzname())
    return part


def _first_in_1970(t: Transition) -> datetime:
    """DTSTART of the observance: the rule's date in 1970, at the local time."""
    first = datetime(1970, t.month, 1, t.local.hour, t.local.minute)
    days = [first + timedelta(days=d) for d in range(31) if (first + timedelta(days=d)).month == t.month]
    matching = [d for d in days if d.weekday() == t.weekday]
    return matching[t.nth - 1] if t.nth > 0 else matching[-1]
