"""Free/busy of Exchange mailboxes: GetUserAvailability, batched and windowed.

EWS answers at most 100 mailboxes and 42 days per request, so a query is
ceil(N/100) requests per window of at most 42 days, plus one
GetServerTimeZones per year (the server's definition of the service's
zone, cached). EWS busy types map to ``BusyKind``: Free and
WorkingElsewhere count as free; a mailbox EWS does not know, or whose
calendar we may not see, is UNKNOWN for the whole window.

Kept apart from ``calendar`` (writing the forum's own events) because it
reads other people's calendars and shares nothing with the writes but the
time conversion ``ews_time``; ``ExchangeCalendar.free_busy`` delegates here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, tzinfo

from exchangelib import EWSDateTime, EWSTimeZone
from exchangelib.properties import (
    FreeBusyViewOptions,
    MailboxData,
    TimeWindow,
    TimeZone,
)
from exchangelib.services import GetUserAvailability

from scheduler.exchange.errors import mapped
from scheduler.model import BusyInterval, BusyKind
from scheduler.ports import chunked

_MAILBOXES = 100  # GetUserAvailability's most mailboxes per request
_WINDOW = timedelta(days=42)  # GetUserAvailability's longest time window
_BUSY = {"Busy": BusyKind.BUSY, "Tentative": BusyKind.TENTATIVE, "OOF": BusyKind.OUT_OF_OFFICE,
         "NoData": BusyKind.UNKNOWN}  # Free and WorkingElsewhere count as free


def ews_time(moment: datetime, tz: tzinfo) -> EWSDateTime:
    """``moment`` in the service's zone, as EWS takes it."""
    return EWSDateTime.from_datetime(moment.astimezone(tz)).astimezone(EWSTimeZone.from_timezone(tz))


class FreeBusy:
    """Busy intervals of any mailboxes the account may see, in the service's zone."""

    def __init__(self, account, tz: tzinfo) -> None:
        self.account = account
        self.tz = tz
        self._zones: dict[int, TimeZone] = {}  # year -> the server's definition of tz

    def lookup(self, addresses: Sequence[str], start: datetime, end: datetime
               ) -> Mapping[str, list[BusyInterval]]:
        """ceil(N/100) GetUserAvailability requests per window of at most 42 days,
        plus one GetServerTimeZones per year (cached)."""
        out: dict[str, list[BusyInterval]] = {a: [] for a in addresses}
        with mapped("free/busy"):
            for first, last in _windows(start, end):
                for batch in chunked(list(dict.fromkeys(addresses)), _MAILBOXES):
                    for address, found in zip(batch, self._availability(batch, first, last)):
                        out[address].extend(i for i in found if i not in out[address])
        return out

    def _availability(self, batch: list[str], start: datetime, end: datetime) -> list[list[BusyInterval]]:
        ews_tz = EWSTimeZone.from_timezone(self.tz)
        views = GetUserAvailability(self.account.protocol).call(
            tzinfo=ews_tz,
            mailbox_data=[MailboxData(email=a, attendee_type="Required",
                                      exclude_conflicts=False) for a in batch],
            timezone=self._zone(start.year),
            free_busy_view_options=FreeBusyViewOptions(
                time_window=TimeWindow(start=ews_time(start, self.tz), end=ews_time(end, self.tz)),
                merged_free_busy_interval=15, requested_view="Detailed"),
        )
        unknown = [BusyInterval(start, end, BusyKind.UNKNOWN)]
        found = [self._intervals(v, start, end) if not isinstance(v, Exception) else unknown for v in views]
        return found + [unknown] * (len(batch) - len(found))

    def _intervals(self, view, start: datetime, end: datetime) -> list[BusyInterval]:
        if view.view_type == "None":  # no rights to this calendar
            return [BusyInterval(start, end, BusyKind.UNKNOWN)]
        out = []
        for event in view.calendar_events or ():
            kind = _BUSY.get(event.busy_type)
            a = max(datetime.fromtimestamp(event.start.timestamp(), self.tz), start)
            b = min(datetime.fromtimestamp(event.end.timestamp(), self.tz), end)
            if kind and a < b:
                out.append(BusyInterval(a, b, kind))
        return out

    def _zone(self, year: int) -> TimeZone:
        if year not in self._zones:
            ews_tz = EWSTimeZone.from_timezone(self.tz)
            [definition] = self.account.protocol.get_timezones(timezones=[ews_tz], return_full_timezone_data=True)
            self._zones[year] = TimeZone.from_server_timezone(tz_definition=definition, for_year=year)
        return self._zones[year]


def _windows(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    out = []
    while start < end:
        out.append((start, min(start + _WINDOW, end)))
        start += _WINDOW
    return out
