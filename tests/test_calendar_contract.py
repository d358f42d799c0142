"""The calendar backend contract (``ports.CalendarBackend``), written once and
run against every backend: the local folder, CalDAV (Radicale), EWS (the
fake EWS server) and Microsoft Graph (the fake Graph server).

Each backend comes with a ``Subject``: the backend, what it promises about
invitations, and a probe that reads what the store holds (the iCalendar
object, the EWS items, the Graph events) as the live occurrences of a UID
and the number of stored objects for it, plus ``fresh()``, a second backend
over the same store (a restart, or a fresh data directory). What only one
kind of store does (iCalendar details, EWS requests, Graph requests) is
tested in that backend's own module.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone

import pytest
from exchangelib.protocol import Protocol
from lxml import etree

from scheduler.calendars.freebusy import event_busy
from scheduler.model import BusyInterval, BusyKind
from scheduler.ports import CalendarBackend
from tests.test_calendar_local import CASEWORKER, SERIES, SERIES_START, SKIPPED, STAMP, TZ, WINDOW, at, single

Span = tuple[datetime, datetime]


@dataclass
class Subject:
    backend: CalendarBackend
    sends_invitations: bool
    occurrences: Callable[[str], list[Span]]  # live (start, end) in UTC within WINDOW, sorted
    objects: Callable[[str], int]  # stored objects (files, items, events) for a UID
    fresh: Callable[[], CalendarBackend]


def utc(day: date, hour: int, minute: int = 0) -> datetime:
    return at(day, hour, minute).astimezone(timezone.utc)


def ics_subject(backend, fresh) -> Subject:
    def occurrences(uid: str) -> list[Span]:
        stored = backend.read(uid)
        if stored is None:
            return []
        return sorted((i.start.astimezone(timezone.utc), i.end.astimezone(timezone.utc))
                      for _, i in event_busy(stored, *WINDOW, TZ))

    return Subject(backend, False, occurrences, lambda uid: int(backend.read(uid) is not None), fresh)


@pytest.fixture
def local_subject(tmp_path) -> Subject:
    from scheduler.calendars.local import LocalCalendar

    def make():
        return LocalCalendar(tmp_path / "calendar", tmp_path / "freebusy", TZ, clock=lambda: STAMP)

    return ics_subject(make(), make)


@pytest.fixture
def caldav_subject(radicale_server):
    from tests.test_caldav import make_backend

    name = f"sparring-{uuid.uuid4().hex[:8]}"
    backend = make_backend(radicale_server, name)
    yield ics_subject(backend, lambda: make_backend(radicale_server, name))
    backend.close()


# -- EWS: the fake EWS server's items --------------------------------------------------


def _ews_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def ews_occurrences(item) -> list[Span]:
    """The live occurrences of a fake EWS item: a weekly series by instance index."""
    start, end = _ews_time(item.start), _ews_time(item.end)
    if not item.recurrence:
        return [(start, end)]
    rule = etree.fromstring(item.recurrence)
    interval = int(rule.findtext(".//{*}Interval"))
    until = rule.findtext(".//{*}EndDate")
    last = date.fromisoformat(until[:10]) if until else WINDOW[1].date()
    local, out, index = start.astimezone(TZ), [], 1
    while (first := local + timedelta(weeks=interval * (index - 1))).date() <= last:  # wall-clock weeks
        span = (first.astimezone(timezone.utc), (first + (end - start)).astimezone(timezone.utc))
        if index in item.moved:
            span = tuple(_ews_time(t) for t in item.moved[index])
        if index not in item.deleted:
            out.append(span)
        index += 1
    return out


@pytest.fixture
def ews_subject(ews_server, ews) -> Subject:
    from scheduler.exchange.account import build_account
    from scheduler.exchange.calendar import ExchangeCalendar
    from tests.test_exchange_calendar import exchange_config

    Protocol.clear_cache()
    account = build_account(exchange_config(ews_server.url), "hemmeligt", max_wait=2)
    ews.availability.update({CASEWORKER: [], "koordinator@kommune.example": []})

    def items(uid: str):
        return [i for i in ews.in_folder("calendar") if i.uid == uid]

    def occurrences(uid: str) -> list[Span]:
        return sorted((max(a, WINDOW[0]), min(b, WINDOW[1])) for i in items(uid) for a, b in ews_occurrences(i)
                      if a < WINDOW[1] and b > WINDOW[0])

    return Subject(ExchangeCalendar(account, TZ), True, occurrences, lambda uid: len(items(uid)),
                   lambda: ExchangeCalendar(account, TZ))


# -- Graph: the fake Graph server's events -----------------------------------------------


@pytest.fixture
def graph_subject(graph_server, graph, graph_calendar) -> Subject:
    from tests.test_graph_calendar import graph_backend

    def occurrences(uid: str) -> list[Span]:
        return graph_calendar.occurrences(uid, *(w.astimezone(timezone.utc) for w in WINDOW))

    return Subject(graph_backend(graph_server), True, occurrences, lambda uid: len(graph_calendar.by_uid(uid)),
                   lambda: graph_backend(graph_server))


@pytest.fixture(params=["local", pytest.param("caldav", marks=pytest.mark.servers), "ews", "graph"])
def subject(request) -> Subject:
    return request.getfixturevalue(f"{request.param}_subject")


# -- the contract ---------------------------------------------------------------------------


def test_is_a_calendar_backend_and_says_who_invites(subject):
    assert isinstance(subject.backend, CalendarBackend)
    assert subject.backend.sends_invitations is subject.sends_invitations


def test_a_single_event_is_stored_once_however_often_and_by_whom_it_is_put(subject):
    subject.backend.put(single())
    subject.backend.put(single())
    subject.fresh().put(single())  # a restart, or a fresh data directory
    assert subject.objects("slot-1@kommune.example") == 1
    assert subject.occurrences("slot-1@kommune.example") == [(utc(date(2027, 1, 7), 10, 10),
                                                             utc(date(2027, 1, 7), 10, 20))]


def test_a_change_replaces_the_event(subject):
    subject.backend.put(single())
    subject.fresh().put(single(start=at(date(2027, 1, 7), 10, 30), end=at(date(2027, 1, 7), 10, 40), sequence=1))
    assert subject.objects("slot-1@kommune.example") == 1
    assert subject.occurrences("slot-1@kommune.example") == [(utc(date(2027, 1, 7), 10, 30),
                                                             utc(date(2027, 1, 7), 10, 40))]


def test_a_weekly_series_with_exdate_is_one_object_and_skips_the_exdate(subject):
    subject.backend.put(SERIES)
    thursdays = [SERIES_START + timedelta(weeks=n) for n in range(4)]  # 7, 14, 21, 28 January
    assert subject.objects(SERIES.uid) == 1
    assert subject.occurrences(SERIES.uid) == [(utc(d, 10), utc(d, 11)) for d in thursdays
                                               if d != SKIPPED.date()]


def test_an_override_moves_one_occurrence_and_survives_a_new_master(subject):
    subject.backend.put(SERIES)
    moved = replace(SERIES, recurrence=None, recurrence_id=at(date(2027, 1, 21), 10),
                    start=at(date(2027, 1, 22), 13), end=at(date(2027, 1, 22), 14), sequence=1)
    subject.backend.put(moved)
    subject.fresh().put(replace(SERIES, summary="Sparringsforum for unge (nyt navn)", sequence=2))
    got = subject.occurrences(SERIES.uid)
    assert (utc(date(2027, 1, 22), 13), utc(date(2027, 1, 22), 14)) in got
    assert (utc(date(2027, 1, 21), 10), utc(date(2027, 1, 21), 11)) not in got
    assert subject.objects(SERIES.uid) == 1


def test_cancelling_one_occurrence_keeps_the_series_also_when_repeated(subject):
    subject.backend.put(SERIES)
    occurrence = at(date(2027, 1, 28), 10)
    cancel = replace(SERIES, recurrence=None, recurrence_id=occurrence, start=occurrence,
                     end=occurrence + timedelta(hours=1), sequence=1, cancelled=True)
    subject.backend.cancel(cancel)
    subject.fresh().cancel(cancel)
    got = subject.occurrences(SERIES.uid)
    assert (utc(date(2027, 1, 28), 10), utc(date(2027, 1, 28), 11)) not in got
    assert (utc(date(2027, 1, 21), 10), utc(date(2027, 1, 21), 11)) in got


def test_cancelling_a_whole_event_leaves_nothing_busy(subject):
    subject.backend.put(SERIES)
    subject.backend.cancel(replace(SERIES, sequence=1, cancelled=True))
    subject.fresh().cancel(replace(SERIES, sequence=1, cancelled=True))
    assert subject.occurrences(SERIES.uid) == []


def test_cancelling_what_does_not_exist_is_quietly_nothing(subject):
    subject.backend.cancel(single(uid="never-put@kommune.example", cancelled=True))
    subject.backend.cancel(replace(SERIES, uid="no-series@kommune.example", recurrence=None,
                                   recurrence_id=SKIPPED, cancelled=True))
    assert subject.objects("never-put@kommune.example") == 0
    assert subject.objects("no-series@kommune.example") == 0


def test_put_many_writes_every_meeting(subject):
    slots = [single(uid=f"slot-{n}@kommune.example", day=date(2027, 1, 4) + timedelta(days=n)) for n in range(3)]
    subject.backend.put_many([SERIES, *slots])
    assert [subject.objects(m.uid) for m in [SERIES, *slots]] == [1, 1, 1, 1]
    assert [len(subject.occurrences(m.uid)) for m in slots] == [1, 1, 1]


def test_an_address_the_backend_cannot_see_is_unknown_not_free(subject):
    subject.backend.put(single())
    result = subject.backend.free_busy(["nobody@kommune.example"], *WINDOW)
    assert result == {"nobody@kommune.example": [BusyInterval(*WINDOW, BusyKind.UNKNOWN)]}


def test_a_moved_occurrence_goes_when_it_is_cancelled_or_becomes_an_exdate(subject):
    subject.backend.put(SERIES)
    for day, to in ((date(2027, 1, 21), date(2027, 1, 22)), (date(2027, 1, 28), date(2027, 1, 29))):
        subject.backend.put(replace(SERIES, recurrence=None, recurrence_id=at(day, 10), start=at(to, 13),
                                    end=at(to, 14), sequence=1))
    cancel = at(date(2027, 1, 21), 10)
    subject.fresh().cancel(replace(SERIES, recurrence=None, recurrence_id=cancel, start=at(date(2027, 1, 22), 13),
                                   end=at(date(2027, 1, 22), 14), sequence=2, cancelled=True))
    # The series as sparring sends it next: every day that does not take place among its exdates.
    closed = replace(SERIES.recurrence, exdates=(*SERIES.recurrence.exdates, cancel, at(date(2027, 1, 28), 10)))
    subject.backend.put(replace(SERIES, recurrence=closed, sequence=3))
    assert subject.occurrences(SERIES.uid) == [(utc(date(2027, 1, 7), 10), utc(date(2027, 1, 7), 11))]
