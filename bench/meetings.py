"""What the round-trip benchmarks share: their result row and a year of the
forum's meetings from the planner (``bench.roundtrips``, ``bench.graph``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import date, timedelta

from scheduler.config import Config
from scheduler.model import Attendee, Meeting, Recurrence, Series, Session

YEAR = timedelta(days=365)
HALF_YEAR = timedelta(days=183)
PEOPLE = 150


@dataclass(frozen=True)
class Row:
    backend: str
    scenario: str
    made: Counter  # requests made, by operation
    minimum: Counter  # the protocol minimum, by operation
    note: str = ""


def plan(config: Config, first: date) -> tuple[dict[str, Series], list[Session]]:
    from scheduler.planning.sessions import Planner

    planner = Planner(series=config.all_series(), closed=config.closed_days(), tz=config.tz)
    return {s.id: s for s in planner.series}, planner.sessions(first, first + YEAR)


def session_meeting(config: Config, series: Series, session: Session, uid: str) -> Meeting:
    return Meeting(
        uid=uid, summary=series.name, start=session.start, end=session.end,
        organizer=config.service.mailbox, organizer_name=config.service.mailbox_name,
        attendees=tuple(Attendee(a) for a in series.coordinators), location=series.location,
        description="Sparringsforum. Dagsordenen udsendes ved fristen.",
    )


def year_meetings(config: Config, first: date, *, recurring: bool) -> list[Meeting]:
    """One recurring event per any-parity weekly series (when ``recurring``), else singles."""
    all_series, sessions = plan(config, first)
    domain = config.service.mailbox.split("@")[1]
    out: list[Meeting] = []
    for series in all_series.values():
        mine = [s for s in sessions if s.series_id == series.id]
        if recurring and series.cadence.value == "weekly" and series.week_parity.value == "any" and mine:
            master = session_meeting(config, series, mine[0], f"sparring-series-{series.id}@{domain}")
            rule = Recurrence(interval=1, until=mine[-1].rule_date,
                              exdates=tuple(s.start for s in mine if not s.planned))
            out.append(replace(master, recurrence=rule))
            continue
        out += [session_meeting(config, series, s, f"sparring-session-{series.id}-{s.rule_date}@{domain}")
                for s in mine if s.planned]
    return out


def exdate_count(meetings: list[Meeting]) -> int:
    return sum(len(m.recurrence.exdates) for m in meetings if m.recurrence)
