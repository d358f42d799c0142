"""Meetings as Graph event JSON (scheduler/graph/events.py): pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from urllib.parse import unquote
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.graph.events import (
    UID_PROPERTY, event_json, graph_time, instances_url, lookup_url, occurrence_of, parse_time,
    same_rule, transaction_id, windows_zone, zone_of,
)
from scheduler.model import Attendee, Meeting, Recurrence

TZ = ZoneInfo("Europe/Copenhagen")
SERIES = Meeting(
    uid="sparring-series-unge@kommune.example", summary="Sparringsforum for unge",
    start=datetime(2027, 1, 7, 10, tzinfo=TZ), end=datetime(2027, 1, 7, 11, tzinfo=TZ),
    organizer="sparring@kommune.example",
    attendees=(Attendee("koordinator@kommune.example", "Koordinator"), Attendee("gaest@kommune.example",
                                                                               required=False)),
    description="Dagsordenen udsendes ved fristen.", location="Mødelokale 2",
    recurrence=Recurrence(interval=1, until=date(2027, 12, 30)),
)


@pytest.mark.parametrize("iana, windows", [
    ("Europe/Copenhagen", "Romance Standard Time"), ("Europe/Berlin", "W. Europe Standard Time"),
    ("Atlantic/Faroe", "GMT Standard Time"), ("America/Nuuk", "Greenland Standard Time"), ("UTC", "UTC"),
])
def test_iana_zones_map_to_windows_names_from_the_cldr_table(iana, windows):
    assert windows_zone(ZoneInfo(iana)) == windows


@given(st.sampled_from(sorted(z for z in available_timezones() if not z.startswith(("Etc/", "SystemV")))))
def test_a_mapped_zone_reads_back_as_the_same_wall_clock_now_and_then(name):
    tz = ZoneInfo(name)
    try:
        windows = windows_zone(tz)
    except ValueError:
        return  # a zone CLDR gives no Windows name is refused, not guessed
    moment = datetime(2027, 7, 1, 12, tzinfo=timezone.utc)
    assert graph_time(moment, tz)["timeZone"] == windows
    assert zone_of(windows).utcoffset(datetime(2027, 7, 1, 12)) is not None


def test_times_go_out_as_local_wall_time_with_the_zone_named_also_across_dst():
    summer = datetime(2027, 6, 3, 8, tzinfo=timezone.utc)
    assert graph_time(summer, TZ) == {"dateTime": "2027-06-03T10:00:00", "timeZone": "Romance Standard Time"}
    assert graph_time(SERIES.start, TZ) == {"dateTime": "2027-01-07T10:00:00", "timeZone": "Romance Standard Time"}
    assert parse_time(graph_time(summer, TZ), TZ) == summer
    assert parse_time({"dateTime": "2027-06-03T08:00:00.0000000", "timeZone": "UTC"}, TZ) == summer
    assert parse_time("2027-06-03T08:00:00Z", TZ) == summer


def test_a_new_series_is_one_event_with_a_weekly_recurrence_and_our_uid():
    body = event_json(SERIES, TZ, create=True)
    assert body["recurrence"] == {
        "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["thursday"], "firstDayOfWeek": "monday"},
        "range": {"type": "endDate", "startDate": "2027-01-07", "endDate": "2027-12-30",
                  "recurrenceTimeZone": "Romance Standard Time"},
    }
    assert body["singleValueExtendedProperties"] == [{"id": UID_PROPERTY, "value": SERIES.uid}]
    assert [a["type"] for a in body["attendees"]] == ["required", "optional"]
    assert body["attendees"][0]["emailAddress"] == {"address": "koordinator@kommune.example", "name": "Koordinator"}
    assert body["sensitivity"] == "private"
    assert "transactionId" in body
    assert event_json(replace(SERIES, recurrence=Recurrence()), TZ)["recurrence"]["range"]["type"] == "noEnd"


def test_an_update_carries_no_transaction_and_a_single_event_no_recurrence():
    body = event_json(replace(SERIES, recurrence=None), TZ)
    assert "recurrence" not in body and "transactionId" not in body
    assert "singleValueExtendedProperties" not in body


def test_the_transaction_id_is_the_same_for_a_repeat_and_new_for_the_next_version():
    assert transaction_id(SERIES) == transaction_id(replace(SERIES, summary="other"))
    assert transaction_id(SERIES) != transaction_id(replace(SERIES, sequence=1))
    assert transaction_id(SERIES) != transaction_id(replace(SERIES, uid="x@kommune.example"))


def test_the_lookup_filters_on_our_property_with_quotes_escaped():
    url = lookup_url("sparring@kommune.example", "it's@kommune.example")
    path, _, query = url.partition("?")
    assert path == "/users/sparring@kommune.example/events"
    assert unquote(query).startswith(
        f"$filter=singleValueExtendedProperties/Any(ep: ep/id eq '{UID_PROPERTY}' "
        "and ep/value eq 'it''s@kommune.example')")


def test_an_occurrence_is_found_by_its_original_start():
    original = datetime(2027, 1, 21, 10, tzinfo=TZ)
    instances = [{"id": "occ-1", "originalStart": "2027-01-14T09:00:00Z"},
                 {"id": "occ-2", "originalStart": "2027-01-21T09:00:00Z"}]
    assert occurrence_of(instances, original) == "occ-2"
    assert occurrence_of(instances, original + timedelta(weeks=1)) is None
    url = unquote(instances_url("sparring@kommune.example", "AAMk=", original))
    assert "startDateTime=2027-01-07T09:00:00Z&endDateTime=2027-02-04T09:00:00Z" in url


def test_a_rule_as_graph_returns_it_is_the_same_as_ours_until_ours_changes():
    ours = event_json(SERIES, TZ)["recurrence"]
    theirs = {"pattern": {"type": "weekly", "interval": 1, "month": 0, "dayOfMonth": 0, "daysOfWeek": ["Thursday"],
                          "firstDayOfWeek": "monday", "index": "first"},
              "range": {"type": "endDate", "startDate": "2027-01-07", "endDate": "2027-12-30",
                        "recurrenceTimeZone": "Romance Standard Time", "numberOfOccurrences": 0}}
    assert same_rule(ours, theirs)
    later = event_json(replace(SERIES, recurrence=Recurrence(until=date(2028, 6, 29))), TZ)["recurrence"]
    assert not same_rule(later, theirs)
    assert not same_rule(ours, None) and same_rule(None, None)
