"""GraphCalendar against the fake Graph server over HTTPS: what the requests
say (the contract every calendar keeps is in test_calendar_contract.py).

Events carry our UID in an extended property and are found by it before
anything is created; writes and getSchedule go in $batch requests of 20.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest

from scheduler.config import GraphConfig
from scheduler.graph.auth import TokenProvider
from scheduler.graph.calendar import GraphCalendar
from scheduler.graph.client import GraphClient
from scheduler.graph.events import UID_PROPERTY
from scheduler.model import BusyInterval, BusyKind, Recurrence
from scheduler.ports import PermanentError
from tests.servers.graph import MAILBOX, SECRET
from tests.test_calendar_local import SERIES, SKIPPED, TZ, at, single

EVENTS = rf"^/users/{MAILBOX}/events"


def graph_backend(graph_server, language: str = "da") -> GraphCalendar:
    tokens = TokenProvider(GraphConfig(**graph_server.config()), environ={"SPARRING_GRAPH_SECRET": SECRET})
    client = GraphClient(graph_server.fake.endpoint, tokens, ca_file=graph_server.ca_file, mailbox=MAILBOX,
                         sleep=lambda seconds: None)
    return GraphCalendar(client, MAILBOX, TZ, language=language)


@pytest.fixture
def calendar(graph_server, graph, graph_calendar) -> GraphCalendar:
    return graph_backend(graph_server)


def bodies(graph, method: str, path: str = EVENTS + "$") -> list[dict]:
    return [r.json for r in graph.requests if r.method == method and re.search(path, r.path)]


def test_a_series_is_one_event_with_its_recurrence_our_uid_and_a_transaction(calendar, graph, graph_calendar):
    calendar.put(SERIES)
    [created] = bodies(graph, "POST")
    assert created["recurrence"]["pattern"] == {"type": "weekly", "interval": 1, "daysOfWeek": ["thursday"],
                                                "firstDayOfWeek": "monday"}
    assert created["recurrence"]["range"]["endDate"] == "2027-03-25"
    assert created["start"] == {"dateTime": "2027-01-07T10:00:00", "timeZone": "Romance Standard Time"}
    assert created["singleValueExtendedProperties"] == [{"id": UID_PROPERTY, "value": SERIES.uid}]
    assert created["transactionId"]
    assert [a["emailAddress"]["address"] for a in created["attendees"]] == ["koordinator@kommune.example"]
    [event] = graph_calendar.by_uid(SERIES.uid)
    assert event.data["subject"] == SERIES.summary


def test_publishing_twice_and_from_a_fresh_data_directory_updates_the_one_event(calendar, graph_server, graph,
                                                                              graph_calendar):
    calendar.put(single())
    calendar.put(single(summary="Flyttet", sequence=1))
    graph_backend(graph_server).put(single(summary="Flyttet igen", sequence=2))
    assert len(bodies(graph, "POST")) == 1
    assert len(bodies(graph, "PATCH", EVENTS + "/[^/]+$")) == 2
    assert graph.count("GET", EVENTS + "$") == 2  # the lookup by UID: once per calendar object
    [event] = graph_calendar.by_uid("slot-1@kommune.example")
    assert event.data["subject"] == "Flyttet igen"


def test_a_create_whose_answer_was_lost_is_not_made_twice(calendar, graph_server, graph, graph_calendar):
    graph.fail_next("POST", EVENTS + "$", 504, times=1)  # Graph made nothing; the client sends it again
    calendar.put(single())
    # As if the first answer had been lost after Graph made the event: the same create again.
    fresh = graph_backend(graph_server)
    fresh._create([single()])
    assert len(graph_calendar.by_uid("slot-1@kommune.example")) == 1
    transactions = {b["transactionId"] for b in bodies(graph, "POST")}
    assert len(transactions) == 1


def test_an_event_someone_deleted_in_outlook_is_made_again(calendar, graph_calendar):
    calendar.put(single())
    graph_calendar.events.clear()
    calendar.put(single(sequence=1))
    assert len(graph_calendar.by_uid("slot-1@kommune.example")) == 1


def test_a_closed_day_cancels_the_one_occurrence_found_through_instances_with_a_danish_comment(
        calendar, graph, graph_calendar):
    calendar.put(replace(SERIES, recurrence=Recurrence(interval=1)))
    closed = at(date(2027, 2, 4), 10)
    calendar.cancel(replace(SERIES, recurrence=None, recurrence_id=closed, start=closed,
                            end=closed + timedelta(hours=1), sequence=1, cancelled=True))
    [instances] = [r for r in graph.requests if r.path.endswith("/instances")]
    assert instances.query["startDateTime"] == "2027-01-21T09:00:00Z"
    [cancel] = bodies(graph, "POST", "/cancel$")
    assert cancel == {"comment": "Sparringsforum for unge torsdag den 4. februar 2027 kl. 10.00 er aflyst. "
                                 "De øvrige møder i rækken holdes som planlagt."}
    [event] = graph_calendar.by_uid(SERIES.uid)
    assert event.cancelled == {closed.astimezone(timezone.utc)}
    assert not bodies(graph, "DELETE", EVENTS)


def test_the_comment_follows_the_language(graph_server, graph, graph_calendar):
    english = graph_backend(graph_server, language="en")
    english.put(single())
    english.cancel(single(sequence=1, cancelled=True))
    assert graph_calendar.comments == ["Sparringsforum: din tid kl. 10.10 on Thursday 7 January 2027 at 10:10 "
                                       "is cancelled."]


def test_the_exdates_of_a_new_series_cost_one_batch_of_lookups_and_one_of_cancels(calendar, graph, graph_calendar):
    holidays = (at(date(2027, 3, 25), 10), at(date(2027, 5, 13), 10))
    calendar.put(replace(SERIES, recurrence=Recurrence(interval=1, until=date(2027, 12, 30), exdates=holidays)))
    assert graph.count("POST", r"^/\$batch$") == 4  # lookup, create, instances, cancels
    assert graph.count("POST", "/cancel$") == 2
    [event] = graph_calendar.by_uid(SERIES.uid)
    assert event.cancelled == {h.astimezone(timezone.utc) for h in holidays}


def test_a_year_of_single_events_costs_one_batch_per_twenty(calendar, graph, graph_calendar):
    meetings = [single(uid=f"session-{n}@kommune.example", day=date(2027, 1, 6) + timedelta(weeks=n))
                for n in range(45)]
    calendar.put_many(meetings)
    assert graph.count("POST", r"^/\$batch$") == 3 + 3  # lookups, then creates, 20 to a batch
    assert graph.count("POST", EVENTS + "$") == 45
    calendar.put_many(meetings)  # known now: updates only
    assert graph.count("POST", EVENTS + "$") == 45 and graph.count("PATCH", EVENTS) == 45


def test_a_moved_occurrence_is_patched_on_its_instance_and_found_again_days_away(calendar, graph_server, graph,
                                                                                 graph_calendar):
    calendar.put(SERIES)
    original = at(date(2027, 1, 21), 10)
    moved = replace(SERIES, recurrence=None, recurrence_id=original, start=original + timedelta(days=5),
                    end=original + timedelta(days=5, hours=1), sequence=1)  # Thursday to Tuesday, as at Easter
    calendar.put(moved)
    [patch] = bodies(graph, "PATCH", EVENTS + "/[^/]+_")
    assert patch["start"] == {"dateTime": "2027-01-26T10:00:00", "timeZone": "Romance Standard Time"}
    assert "recurrence" not in patch
    graph_backend(graph_server).cancel(replace(moved, sequence=2, cancelled=True))
    [event] = graph_calendar.by_uid(SERIES.uid)
    assert event.cancelled == {d.astimezone(timezone.utc) for d in (SKIPPED, original)}


def test_free_busy_is_split_by_20_schedules_and_41_days_in_batches_of_20(calendar, graph):
    people = [f"person{n:03d}@kommune.example" for n in range(150)]
    for person in people:
        graph.mailbox(person)
    start = datetime(2027, 1, 4, tzinfo=TZ)
    result = calendar.free_busy(people, start, start + timedelta(days=183))
    asked = [r.json for r in graph.requests if r.path.endswith("/calendar/getSchedule")]
    assert len(asked) == 8 * 5
    for body in asked:
        assert len(body["schedules"]) <= 20
        first, last = (datetime.fromisoformat(body[k]["dateTime"]) for k in ("startTime", "endTime"))
        assert last - first < timedelta(days=42)
        assert body["startTime"]["timeZone"] == "Romance Standard Time"
    assert graph.count("POST", r"^/\$batch$") == 2
    assert result == {p: [] for p in people}


def test_free_busy_maps_statuses_and_an_unknown_address_is_unknown(calendar, graph):
    from tests.servers.graph_calendar import calendar_of

    day = datetime(2027, 3, 1, tzinfo=TZ)
    calendar_of(graph, "a@kommune.example").availability = [
        (day + timedelta(hours=9), day + timedelta(hours=10), "busy"),
        (day + timedelta(hours=11), day + timedelta(hours=12), "tentative"),
        (day + timedelta(days=1), day + timedelta(days=2), "oof"),
        (day + timedelta(hours=13), day + timedelta(hours=14), "workingElsewhere"),
        (day + timedelta(hours=15), day + timedelta(hours=16), "free"),
    ]
    window = (day, day + timedelta(days=4))
    result = calendar.free_busy(["a@kommune.example", "ukendt@andet.example"], *window)
    assert [(i.start, i.end, i.kind) for i in result["a@kommune.example"]] == [
        (day + timedelta(hours=9), day + timedelta(hours=10), BusyKind.BUSY),
        (day + timedelta(hours=11), day + timedelta(hours=12), BusyKind.TENTATIVE),
        (day + timedelta(days=1), day + timedelta(days=2), BusyKind.OUT_OF_OFFICE),
    ]
    assert result["ukendt@andet.example"] == [BusyInterval(*window, BusyKind.UNKNOWN)]


def test_throttling_inside_a_batch_is_waited_out(calendar, graph, graph_calendar):
    graph.fail_next("POST", r"/calendar/getSchedule$", 429, retry_after=2)
    start = datetime(2027, 1, 4, tzinfo=TZ)
    calendar.put(single())
    result = calendar.free_busy(["sagsbehandler@kommune.example"], start, start + timedelta(days=7))
    assert [i.kind for i in result["sagsbehandler@kommune.example"]] == [BusyKind.BUSY]
    assert graph.count("POST", r"/calendar/getSchedule$") == 2


def test_a_missing_permission_is_one_sentence_naming_it(calendar, graph):
    graph.permissions.discard("Calendars.ReadWrite")
    with pytest.raises(PermanentError, match="Calendars.ReadWrite") as caught:
        calendar.put(single())
    assert "\n" not in str(caught.value)


def test_a_zone_exchange_online_has_no_name_for_is_refused_at_start_up():
    from zoneinfo import ZoneInfo

    from scheduler.errors import ConfigError

    with pytest.raises(ConfigError, match=r"service\.timezone: the time zone Antarctica/Troll has no Windows name"):
        GraphCalendar(None, MAILBOX, ZoneInfo("Antarctica/Troll"))


def test_a_renamed_series_keeps_its_cancelled_days_and_a_new_end_rewrites_the_rule(calendar, graph_server, graph,
                                                                                    graph_calendar):
    weekly = replace(SERIES, recurrence=Recurrence(interval=1, until=date(2027, 6, 24)))
    calendar.put(weekly)
    closed = at(date(2027, 2, 4), 10)
    calendar.cancel(replace(weekly, recurrence=None, recurrence_id=closed, cancelled=True, sequence=1))
    graph_backend(graph_server).put(replace(weekly, summary="Sparringsforum (nyt navn)", sequence=2))
    [renamed] = bodies(graph, "PATCH", EVENTS + "/[^/_]+$")
    assert "recurrence" not in renamed  # Exchange would drop the cancelled day with a rewritten rule
    [event] = graph_calendar.by_uid(SERIES.uid)
    assert closed.astimezone(timezone.utc) in event.cancelled
    calendar.put(replace(weekly, recurrence=Recurrence(interval=1, until=date(2027, 12, 30)), sequence=3))
    assert bodies(graph, "PATCH", EVENTS + "/[^/_]+$")[-1]["recurrence"]["range"]["endDate"] == "2027-12-30"
