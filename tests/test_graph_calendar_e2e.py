"""End to end with ``calendar.backend = "graph"``: publishing the sessions,
inviting a caseworker to her slot and booking a network meeting by
free/busy, all against the fake Graph server (Exchange mails the attendees,
so sparring queues no iCalendar mails of its own)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from scheduler.config import load_config
from scheduler.graph.events import parse_time
from scheduler.services.booking import BookingRequest
from scheduler.services.publishing import publish_horizon
from scheduler.store.tables import OutboxEntry
from tests.appkit import CONFIG, TZ, build, ingest, item_mail
from tests.servers.graph import SECRET
from tests.servers.graph_calendar import calendar_of

A, B = "anne@kommune.example", "bo@kommune.example"


def graph_config(graph_server):
    config = load_config(CONFIG)
    graph = config.graph.model_copy(update=graph_server.config())
    return config.model_copy(update={"graph": graph,
                                     "calendar": config.calendar.model_copy(update={"backend": "graph"})})


def test_sessions_slots_and_a_booking_go_to_the_forum_calendar_in_exchange_online(
        tmp_path, monkeypatch, graph_server, graph, graph_calendar):
    monkeypatch.setenv("SPARRING_GRAPH_SECRET", SECRET)
    app, dispatcher = build(tmp_path, "2027-03-01T08:00", monkeypatch, config=graph_config(graph_server))

    publish_horizon(app)
    dispatcher.run_once()
    series = [e for e in graph_calendar.events.values() if e.data.get("recurrence")]
    assert len(series) == 1  # the weekly forum; the monthly one (even ISO weeks) as single events
    [weekly] = series
    assert weekly.data["recurrence"]["pattern"]["daysOfWeek"] == ["thursday"]
    assert weekly.data["start"]["timeZone"] == "Romance Standard Time"
    closed = {d.astimezone(TZ).date() for d in weekly.cancelled}
    assert {date(2027, 3, 25), date(2027, 5, 6)} <= closed  # Skærtorsdag, Kristi himmelfartsdag
    assert all("er aflyst" in c for c in graph_calendar.comments)
    singles = [e for e in graph_calendar.events.values() if not e.data.get("recurrence")]
    assert singles and all(parse_time(e.data["start"], TZ).weekday() == 2 for e in singles)

    ingest(app, item_mail("150303-4321", "a1"), "2027-03-01T09:00")
    dispatcher.run_once()
    slots = [e for e in graph_calendar.events.values() if "karen@kommune.example" in e.attendees]
    assert len(slots) == 1

    for person in (A, B):
        graph.mailbox(person)
    day = datetime(2027, 3, 8, tzinfo=TZ)
    calendar_of(graph, A).availability = [(day + timedelta(hours=9), day + timedelta(hours=12), "busy")]
    calendar_of(graph, B).availability = [(day + timedelta(hours=12), day + timedelta(hours=13), "oof")]
    result = app.booker().book(BookingRequest("network", date(2027, 3, 8), date(2027, 3, 12),
                                              timedelta(minutes=60), required=(A, B)))
    assert result.candidate.start == day + timedelta(hours=13)
    dispatcher.run_once()
    [booked] = [e for e in graph_calendar.events.values() if A in e.attendees]
    assert parse_time(booked.data["start"], timezone.utc) == day + timedelta(hours=13)
    assert set(booked.attendees) == {A, B}

    publish_horizon(app)  # again: nothing new
    dispatcher.run_once()
    before = {e.uid for e in graph_calendar.events.values()}
    fresh, fresh_dispatcher = build(tmp_path / "fresh", "2027-03-01T08:00", monkeypatch,
                                    config=graph_config(graph_server))
    publish_horizon(fresh)  # a fresh data directory: found by UID, changed in place
    fresh_dispatcher.run_once()
    after = [e.uid for e in graph_calendar.events.values()]
    assert sorted(after) == sorted(before) and len(after) == len(set(after))
    with app.transaction() as repo:
        kinds = {row.kind for row in repo.db.query(OutboxEntry)}
    assert "invitation" not in kinds  # Exchange sends them
