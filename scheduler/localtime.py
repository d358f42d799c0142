"""Times as people read them: local time in the service's zone.

Every time shown to a person (receipts, agendas, alerts, ``status``, the
CLI) goes through here or through the template filters built on it
(``render``): an arrival stored or received in UTC reads as the wall-clock
time in ``service.timezone``. Light on purpose: ``sparring plan`` uses it
without loading the templates.
"""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo


def local(moment: datetime, tz: tzinfo) -> datetime:
    """``moment`` in the service's zone; a naive time is UTC (as stored)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(tz)


def people_time(moment: datetime | None, tz: tzinfo, seconds: bool = False) -> str:
    """'2027-01-04 12:30' in the service's zone: how ``status`` and the CLI
    show a time to a person (the zone is said once, in the header line)."""
    if moment is None:
        return "never"
    return local(moment, tz).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def people_span(start: datetime, end: datetime, tz: tzinfo) -> str:
    """'2027-01-04 10:00-11:00': a meeting or session in the service's zone."""
    return f"{people_time(start, tz)}-{local(end, tz):%H:%M}"
