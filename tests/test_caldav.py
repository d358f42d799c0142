"""The CalDAV backend against a real Radicale on 127.0.0.1: what an
iCalendar store holds (the contract of every backend is in
test_calendar_contract.py), round trips (one PUT per calendar object), the server's own
free-busy REPORT, other people's calendars, and the errors."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import caldav
import pytest

from scheduler.calendars.caldav import CaldavCalendar, require_tls
from scheduler.calendars.freebusy import parse_busy
from scheduler.errors import ConfigError
from scheduler.model import BusyKind
from scheduler.ports import PermanentError, TransientError
from tests.servers.radicale import free_port
from tests.test_calendar_local import (
    FORUM, SERIES, STAMP, TZ, WINDOW, IcsCalendarContract, at, events, single, utc,
)

pytestmark = pytest.mark.servers


def make_backend(url: str, name: str | None = None) -> CaldavCalendar:
    return CaldavCalendar(url, FORUM, "any-password", name or f"sparring-{uuid.uuid4().hex[:8]}", TZ,
                          clock=lambda: STAMP)


class TestCaldavIcs(IcsCalendarContract):
    @pytest.fixture
    def backend(self, radicale_server):
        backend = make_backend(radicale_server)
        yield backend
        backend.close()


def count_requests(backend: CaldavCalendar) -> list[str]:
    """Record the HTTP method of every request the backend's client sends."""
    sent: list[str] = []
    original = backend.client.request

    def counting(url, method="GET", *args, **kwargs):
        sent.append(method.upper())
        return original(url, method, *args, **kwargs)

    backend.client.request = counting
    return sent


def test_one_put_per_calendar_object(radicale_server):
    backend = make_backend(radicale_server)
    backend.calendar()  # finding or making the calendar is not part of the count
    sent = count_requests(backend)
    overrides = [replace(SERIES, recurrence=None, recurrence_id=at(date(2027, 1, 7) + timedelta(weeks=n), 10),
                         start=at(date(2027, 1, 7) + timedelta(weeks=n), 12),
                         end=at(date(2027, 1, 7) + timedelta(weeks=n), 13), sequence=1) for n in (2, 3, 4)]
    slots = [single(uid=f"slot-{n}@kommune.example", day=date(2027, 2, 1) + timedelta(days=n)) for n in range(5)]
    backend.put_many([SERIES, *overrides, *slots])
    assert sent.count("PUT") == 6  # the series with its three overrides, and five slots
    assert sent.count("REPORT") == 1  # one multiget for what is stored already
    assert len(events(backend.read(SERIES.uid))) == 4


def test_the_servers_free_busy_report_reflects_series_override_and_cancellations(radicale_server):
    backend = make_backend(radicale_server)
    backend.put(SERIES)
    backend.put(replace(SERIES, recurrence=None, recurrence_id=at(date(2027, 1, 21), 10),
                        start=at(date(2027, 1, 22), 13), end=at(date(2027, 1, 22), 14), sequence=1))
    occurrence = at(date(2027, 1, 28), 10)
    backend.cancel(replace(SERIES, recurrence=None, recurrence_id=occurrence, start=occurrence,
                           end=occurrence + timedelta(hours=1), sequence=1, cancelled=True))
    backend.put(single())
    backend.cancel(single(sequence=1, cancelled=True))
    report = backend.calendar().freebusy_request(*WINDOW)
    got = [(i.start, i.end) for i in parse_busy(report.data.encode(), *WINDOW, tz=TZ)]
    assert got == [
        (utc(date(2027, 1, 7), 10), utc(date(2027, 1, 7), 11)),  # 14 January is an EXDATE
        (utc(date(2027, 1, 22), 13), utc(date(2027, 1, 22), 14)),  # moved from the 21st
    ]  # 28 January cancelled, the single slot cancelled


def test_the_server_lists_exactly_the_occurrences_left_after_cancels(radicale_server):
    """Radicale's own expansion (a time-range REPORT with CALDAV:expand) as
    the independent reader: a cancelled occurrence, moved or not, is gone."""
    backend = make_backend(radicale_server)
    backend.put(SERIES)
    backend.put(replace(SERIES, recurrence=None, recurrence_id=at(date(2027, 1, 21), 10),
                        start=at(date(2027, 1, 22), 13), end=at(date(2027, 1, 22), 14), sequence=1))
    for day, sequence in ((date(2027, 1, 21), 2), (date(2027, 1, 28), 3)):
        start = at(day, 10)
        backend.cancel(replace(SERIES, recurrence=None, recurrence_id=start, start=start,
                               end=start + timedelta(hours=1), sequence=sequence, cancelled=True))
    found = backend.calendar().search(start=at(date(2027, 1, 1), 0), end=at(date(2027, 2, 12), 0),
                                      event=True, expand=True, server_expand=True)
    starts = sorted(component.decoded("dtstart").astimezone(timezone.utc)
                    for resource in found for component in resource.icalendar_instance.walk("VEVENT"))
    assert starts == [utc(date(2027, 1, 7), 10), utc(date(2027, 2, 4), 10), utc(date(2027, 2, 11), 10)]


ANNE_SERIES = """\
BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:anne-1
DTSTAMP:20270101T000000Z
DTSTART;TZID=Europe/Copenhagen:20270111T090000
DTEND;TZID=Europe/Copenhagen:20270111T100000
RRULE:FREQ=WEEKLY;COUNT=3
EXDATE;TZID=Europe/Copenhagen:20270118T090000
END:VEVENT
END:VCALENDAR
"""
ANNE_TENTATIVE = """\
BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:anne-2
DTSTAMP:20270101T000000Z
DTSTART:20270112T120000Z
DTEND:20270112T130000Z
STATUS:TENTATIVE
END:VEVENT
END:VCALENDAR
"""


def test_free_busy_of_other_people_by_their_calendars_report(radicale_server):
    anne = "anne@kommune.example"
    with caldav.DAVClient(url=radicale_server, username=anne, password="x", auth_type="basic") as own:
        work = own.get_principal().make_calendar(name="Arbejde", cal_id=f"work-{uuid.uuid4().hex[:6]}")
        work.add_event(ANNE_SERIES)
        work.add_event(ANNE_TENTATIVE)
    backend = make_backend(radicale_server)
    result = backend.free_busy([anne], *WINDOW)[anne]
    assert [(i.start.astimezone(timezone.utc), i.end.astimezone(timezone.utc), i.kind) for i in result] == [
        (utc(date(2027, 1, 11), 9), utc(date(2027, 1, 11), 10), BusyKind.BUSY),
        (datetime(2027, 1, 12, 12, tzinfo=timezone.utc), datetime(2027, 1, 12, 13, tzinfo=timezone.utc),
         BusyKind.TENTATIVE),
        (utc(date(2027, 1, 25), 9), utc(date(2027, 1, 25), 10), BusyKind.BUSY),  # the 18th is an EXDATE
    ]


def test_the_client_sends_credentials_even_to_a_server_without_auth(radicale_server):
    anonymous = CaldavCalendar(radicale_server, "", "", "sparring", TZ)
    with pytest.raises(PermanentError, match="refused"):
        anonymous.put(single())


def test_a_server_that_does_not_answer_is_a_transient_error():
    backend = CaldavCalendar(f"http://127.0.0.1:{free_port()}/", FORUM, "x", "sparring", TZ, timeout=5)
    with pytest.raises(TransientError, match="cannot be reached"):
        backend.put(single())


@pytest.mark.parametrize("url", ["http://caldav.kommune.example/", "ftp://127.0.0.1/", "http://10.0.0.1/dav/",
                                 "http://localhost/"])  # a name may resolve anywhere: loopback IP literals only
def test_plain_http_is_refused_except_to_this_machine(url):
    with pytest.raises(ConfigError, match="https://"):
        require_tls(url)


@pytest.mark.parametrize("url", ["https://caldav.kommune.example/", "http://127.0.0.1:5232/",
                                 "http://[::1]:8080/"])
def test_https_and_loopback_are_accepted(url):
    require_tls(url)


def test_an_existing_calendar_is_reused_not_made_again(radicale_server):
    name = f"shared-{uuid.uuid4().hex[:6]}"
    make_backend(radicale_server, name).put(single())
    again = make_backend(radicale_server, name)
    assert again.read("slot-1@kommune.example") is not None
