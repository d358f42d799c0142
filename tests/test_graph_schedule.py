"""getSchedule splitting and merging (scheduler/graph/schedule.py): pure, property-tested."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.graph.events import graph_time
from scheduler.graph.schedule import (
    MAX_SCHEDULES, ScheduleQuery, answers_to_busy, coalesce, queries, windows,
)
from scheduler.model import BusyInterval, BusyKind

TZ = ZoneInfo("Europe/Copenhagen")
START = datetime(2027, 1, 4, tzinfo=TZ)
STATUSES = {"busy": BusyKind.BUSY, "tentative": BusyKind.TENTATIVE, "oof": BusyKind.OUT_OF_OFFICE,
            "unknown": BusyKind.UNKNOWN, "free": None, "workingElsewhere": None}

people = st.lists(st.sampled_from([f"p{n}@kommune.example" for n in range(70)]
                                  + [f"P{n}@Kommune.example" for n in range(5)]), max_size=90)
spans = st.tuples(st.integers(0, 400 * 24), st.integers(1, 24 * 10)).map(
    lambda t: (START + timedelta(hours=t[0]), START + timedelta(hours=t[0] + t[1])))


@given(people, st.integers(1, 400 * 24))
@settings(max_examples=60, deadline=None)
def test_every_person_and_moment_is_asked_once_within_the_limits(addresses, hours):
    end = START + timedelta(hours=hours)
    asked = queries(addresses, START, end)
    distinct = {a.lower() for a in addresses}
    for query in asked:
        assert 0 < len(query.schedules) <= MAX_SCHEDULES
        assert len({s.lower() for s in query.schedules}) == len(query.schedules)
        assert query.end - query.start < timedelta(days=42)
    for first, last in windows(START, end):
        in_window = [q for q in asked if (q.start, q.end) == (first, last)]
        assert sorted(s.lower() for q in in_window for s in q.schedules) == sorted(distinct)
    cut = windows(START, end)
    assert cut[0][0] == START and cut[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(cut, cut[1:]))


def server(calendars: dict[str, list[tuple[datetime, datetime, str]]], query: ScheduleQuery) -> list[dict]:
    """What Graph answers: each known person's items overlapping the window (not clipped)."""
    out = []
    for person in query.schedules:
        items = calendars.get(person.lower())
        if items is None:
            out.append({"scheduleId": person, "error": {"responseCode": "ErrorMailRecipientNotFound"}})
            continue
        out.append({"scheduleId": person.upper(), "scheduleItems": [
            {"status": status, "start": graph_time(a, timezone.utc), "end": graph_time(b, timezone.utc)}
            for a, b, status in items if a < query.end and b > query.start]})
    return out


@given(st.dictionaries(st.sampled_from(["a@k.dk", "b@k.dk", "c@k.dk"]),
                       st.lists(st.tuples(spans, st.sampled_from(sorted(STATUSES))), max_size=8)),
       st.integers(24, 300 * 24))
@settings(max_examples=60, deadline=None)
def test_split_answers_merge_to_the_unsplit_answer(raw, hours):
    calendars = {p: [(a, b, s) for (a, b), s in items] for p, items in raw.items()}
    end = START + timedelta(hours=hours)
    addresses = ["a@k.dk", "b@k.dk", "c@k.dk", "nobody@k.dk"]
    got = answers_to_busy(addresses, [(q, server(calendars, q)) for q in queries(addresses, START, end)], TZ)
    for person in addresses:
        if person not in calendars:
            assert got[person] == [BusyInterval(START, end, BusyKind.UNKNOWN)]
            continue
        whole = [BusyInterval(max(a, START).astimezone(TZ), min(b, end).astimezone(TZ), STATUSES[s])
                 for a, b, s in calendars[person] if STATUSES[s] and a < end and b > START]
        assert got[person] == coalesce(whole)


@given(st.lists(st.tuples(spans, st.sampled_from(list(BusyKind))), max_size=12))
def test_coalesce_keeps_every_moment_and_kind_and_leaves_no_touching_pair(raw):
    given_spans = [BusyInterval(a, b, k) for (a, b), k in raw]
    merged = coalesce(given_spans)
    for kind in BusyKind:
        mine = [s for s in merged if s.kind is kind]
        assert all(x.end < y.start for x, y in zip(mine, mine[1:]))
        for span in given_spans:
            if span.kind is kind:
                assert any(m.start <= span.start and span.end <= m.end for m in mine)
        for m in mine:  # nothing invented: each merged span starts and ends on a given one
            assert any(s.start == m.start for s in given_spans if s.kind is kind)
            assert any(s.end == m.end for s in given_spans if s.kind is kind)


def test_statuses_map_to_busy_kinds_and_free_time_is_left_out():
    query = ScheduleQuery(("a@k.dk",), START, START + timedelta(days=1))
    items = [{"status": s, "start": {"dateTime": f"2027-01-04T{9 + n:02d}:00:00.0000000", "timeZone": "UTC"},
              "end": {"dateTime": f"2027-01-04T{9 + n:02d}:30:00.0000000", "timeZone": "UTC"}}
             for n, s in enumerate(["Busy", "Tentative", "Oof", "WorkingElsewhere", "Free", "Unknown"])]
    [(_, result)] = answers_to_busy(["a@k.dk"], [(query, [{"scheduleId": "A@K.DK", "scheduleItems": items}])],
                                    TZ).items()
    assert [(i.start.astimezone(timezone.utc).hour, i.kind) for i in result] == [
        (9, BusyKind.BUSY), (10, BusyKind.TENTATIVE), (11, BusyKind.OUT_OF_OFFICE), (14, BusyKind.UNKNOWN)]


def test_the_request_body_names_the_window_in_the_windows_zone():
    body = ScheduleQuery(("a@k.dk",), START, START + timedelta(days=41)).body(TZ)
    assert body["startTime"] == {"dateTime": "2027-01-04T00:00:00", "timeZone": "Romance Standard Time"}
    assert body["endTime"]["dateTime"] == "2027-02-14T00:00:00"
    assert body["schedules"] == ["a@k.dk"]


def test_150_people_over_half_a_year_are_40_requests():
    asked = queries([f"p{n}@k.dk" for n in range(150)], START, START + timedelta(days=183))
    assert len(asked) == 8 * 5
