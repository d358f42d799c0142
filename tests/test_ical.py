"""iCalendar output, parsed back with icalendar: every rule Outlook depends on,
and the VTIMEZONE written with RRULEs checked against zoneinfo."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from scheduler.calendars.ical import build_calendar, to_ical
from scheduler.calendars.vtimezone import vtimezone
from scheduler.errors import ConfigError
from scheduler.model import Attendee, Meeting, Recurrence

TZ = ZoneInfo("Europe/Copenhagen")
STAMP = datetime(2027, 1, 4, 8, 30, 15, 123456, tzinfo=TZ)
FORUM = "sparring@kommune.example"


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


SLOT = Meeting(
    uid="sparring-slot-17@kommune.example", summary="Sparringsforum for unge: din tid kl. 10.10",
    start=at(date(2027, 6, 10), 10, 10), end=at(date(2027, 6, 10), 10, 20), organizer=FORUM,
    organizer_name="Sparringsforum", description="Din tid i sparringsforum.", location="Mødelokale 2, Rådhuset",
    attendees=(Attendee("anne@kommune.example", "Anne Ørsted"), Attendee("bo@kommune.example", required=False)),
    sequence=3,
)
SERIES = replace(
    SLOT, uid="sparring-series-unge@kommune.example", summary="Sparringsforum for unge",
    start=at(date(2027, 1, 7), 10), end=at(date(2027, 1, 7), 11), sequence=0,
    recurrence=Recurrence(interval=1, until=date(2027, 6, 24),
                          exdates=(at(date(2027, 5, 6), 10), at(date(2027, 1, 14), 10))),
)


def parse(data: bytes) -> Calendar:
    return Calendar.from_ical(data)


def only_event(calendar: Calendar):
    [event] = calendar.walk("VEVENT")
    return event


def test_method_prodid_and_one_vevent():
    calendar = parse(to_ical([SLOT], "REQUEST", TZ, stamp=STAMP))
    assert calendar["method"] == "REQUEST"
    assert calendar["version"] == "2.0"
    assert "sparring" in calendar["prodid"]
    assert len(calendar.walk("VEVENT")) == 1


def test_no_method_for_a_stored_object():
    assert "method" not in parse(to_ical([SLOT], None, TZ, stamp=STAMP))


def test_organizer_is_the_forum_mailbox_with_cn():
    organizer = only_event(parse(to_ical([SLOT], "REQUEST", TZ, stamp=STAMP)))["organizer"]
    assert str(organizer) == f"mailto:{FORUM}"
    assert organizer.params["CN"] == "Sparringsforum"


def test_attendees_carry_role_partstat_rsvp_and_cn():
    attendees = only_event(parse(to_ical([SLOT], "REQUEST", TZ, stamp=STAMP)))["attendee"]
    anne, bo = attendees
    assert str(anne) == "mailto:anne@kommune.example"
    assert dict(anne.params) == {"CN": "Anne Ørsted", "CUTYPE": "INDIVIDUAL", "ROLE": "REQ-PARTICIPANT",
                                 "PARTSTAT": "NEEDS-ACTION", "RSVP": "TRUE"}
    assert bo.params["ROLE"] == "OPT-PARTICIPANT"
    assert bo.params["CN"] == "bo@kommune.example"


def test_uid_sequence_and_a_utc_dtstamp_from_the_stamp_given():
    data = to_ical([SLOT], "REQUEST", TZ, stamp=STAMP)
    event = only_event(parse(data))
    assert str(event["uid"]) == SLOT.uid
    assert event["sequence"] == 3
    assert b"DTSTAMP:20270104T073015Z" in data  # UTC, whole seconds
    assert event.decoded("dtstamp") == STAMP.replace(microsecond=0)


def test_dtstart_and_dtend_in_local_time_with_tzid():
    data = to_ical([SLOT], "REQUEST", TZ, stamp=STAMP)
    assert b"DTSTART;TZID=Europe/Copenhagen:20270610T101000" in data
    assert b"DTEND;TZID=Europe/Copenhagen:20270610T102000" in data
    event = only_event(parse(data))
    assert event.decoded("dtstart").utcoffset() == timedelta(hours=2)


def test_a_meeting_in_utc_is_written_in_the_service_zone():
    utc_slot = replace(SLOT, start=SLOT.start.astimezone(timezone.utc), end=SLOT.end.astimezone(timezone.utc))
    assert b"DTSTART;TZID=Europe/Copenhagen:20270610T101000" in to_ical([utc_slot], "REQUEST", TZ, stamp=STAMP)


def test_vtimezone_uses_yearly_rrules_and_no_rdate():
    data = to_ical([SLOT], "REQUEST", TZ, stamp=STAMP)
    assert b"RDATE" not in data
    [zone] = parse(data).walk("VTIMEZONE")
    assert str(zone["tzid"]) == "Europe/Copenhagen"
    rules = {part.name: part for part in zone.subcomponents}
    standard, daylight = rules["STANDARD"], rules["DAYLIGHT"]
    assert standard["rrule"].to_ical() == b"FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10"
    assert daylight["rrule"].to_ical() == b"FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3"
    assert (standard["tzoffsetfrom"].td, standard["tzoffsetto"].td) == (timedelta(hours=2), timedelta(hours=1))
    assert (daylight["tzoffsetfrom"].td, daylight["tzoffsetto"].td) == (timedelta(hours=1), timedelta(hours=2))
    assert data.index(b"BEGIN:VTIMEZONE") < data.index(b"BEGIN:VEVENT")


# Built from the rules themselves (lookup_tzid=False), not from the TZID's name.
WRITTEN = vtimezone(TZ, 2026).to_tz(lookup_tzid=False)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2031, 12, 31)))
def test_the_vtimezone_agrees_with_zoneinfo(moment):
    utc = moment.replace(tzinfo=timezone.utc)
    assert utc.astimezone(WRITTEN).utcoffset() == utc.astimezone(TZ).utcoffset()


def test_class_private_and_status():
    event = only_event(parse(to_ical([SLOT], "REQUEST", TZ, stamp=STAMP)))
    assert event["class"] == "PRIVATE"
    assert event["status"] == "CONFIRMED"
    assert event["transp"] == "OPAQUE"


def test_cancel_method_means_status_cancelled():
    calendar = parse(to_ical([replace(SLOT, sequence=4)], "CANCEL", TZ, stamp=STAMP))
    assert calendar["method"] == "CANCEL"
    event = only_event(calendar)
    assert event["status"] == "CANCELLED"
    assert event["sequence"] == 4


def test_weekly_recurrence_with_utc_until_and_exdates_with_tzid():
    data = to_ical([SERIES], "REQUEST", TZ, stamp=STAMP)
    event = only_event(parse(data))
    assert event["rrule"]["FREQ"] == ["WEEKLY"] and event["rrule"]["INTERVAL"] == [1]
    # the last occurrence, 24 June 10:00 CEST, in UTC
    assert event["rrule"]["UNTIL"] == [datetime(2027, 6, 24, 8, tzinfo=timezone.utc)]
    assert b"UNTIL=20270624T080000Z" in data
    assert b"EXDATE;TZID=Europe/Copenhagen:20270114T100000,20270506T100000" in data


def test_every_other_week():
    series = replace(SERIES, recurrence=Recurrence(interval=2))
    event = only_event(parse(to_ical([series], "REQUEST", TZ, stamp=STAMP)))
    assert event["rrule"]["INTERVAL"] == [2] and "UNTIL" not in event["rrule"]


def test_one_occurrence_carries_recurrence_id_and_no_rule():
    occurrence = replace(SERIES, recurrence=None, recurrence_id=at(date(2027, 3, 4), 10),
                         start=at(date(2027, 3, 5), 13), end=at(date(2027, 3, 5), 14), sequence=2)
    data = to_ical([occurrence], "CANCEL", TZ, stamp=STAMP)
    event = only_event(parse(data))
    assert b"RECURRENCE-ID;TZID=Europe/Copenhagen:20270304T100000" in data
    assert "rrule" not in event and "exdate" not in event
    assert event["status"] == "CANCELLED"
    assert str(event["uid"]) == SERIES.uid


def test_master_first_then_overrides_in_a_stored_object():
    override = replace(SERIES, recurrence=None, recurrence_id=at(date(2027, 2, 4), 10), sequence=1)
    events = parse(to_ical([override, SERIES], None, TZ, stamp=STAMP)).walk("VEVENT")
    assert ["recurrence-id" in e for e in events] == [False, True]


def test_a_cpr_number_in_any_text_is_masked_before_it_is_written():
    """Issue 11, 14: the meeting masks it on construction, in any form (an en dash too)."""
    for field in ("summary", "description", "location"):
        for number in ("010190-1234", "010190\u20131234", "0101901234"):
            written = to_ical([replace(SLOT, **{field: f"Borger {number}"})], "REQUEST", TZ, stamp=STAMP)
            assert b"1234" not in written and b"010190-xxxx" in written


def test_times_without_zone_and_mixed_uids_are_refused():
    with pytest.raises(ValueError, match="time zone"):
        to_ical([replace(SLOT, start=datetime(2027, 6, 10, 10), end=datetime(2027, 6, 10, 11))],
                "REQUEST", TZ, stamp=STAMP)
    with pytest.raises(ValueError, match="one UID"):
        to_ical([SLOT, SERIES], "REQUEST", TZ, stamp=STAMP)
    assert len(parse(to_ical([SLOT, SERIES], "PUBLISH", TZ, stamp=STAMP)).walk("VEVENT")) == 2


@pytest.mark.parametrize("zone", ["America/New_York", "Australia/Sydney", "UTC", "Asia/Tokyo"])
def test_other_zones_with_a_fixed_rule_are_written_and_agree(zone):
    tz = ZoneInfo(zone)
    written = vtimezone(tz, 2027).to_tz(lookup_tzid=False)
    for month in range(1, 13):
        moment = datetime(2028, month, 15, 12, tzinfo=timezone.utc)
        assert moment.astimezone(written).utcoffset() == moment.astimezone(tz).utcoffset()


def test_a_zone_whose_rule_changes_is_refused_in_one_sentence():
    with pytest.raises(ConfigError, match="America/Sao_Paulo"):
        vtimezone(ZoneInfo("America/Sao_Paulo"), 2017)  # daylight saving abolished in 2019
    with pytest.raises(ConfigError, match="Africa/Casablanca"):
        vtimezone(ZoneInfo("Africa/Casablanca"), 2027)  # suspended every Ramadan


# -- to_ical writes the calendar's own lines and the VTIMEZONE once -------------

OVERRIDE = replace(SERIES, recurrence=None, recurrence_id=at(date(2027, 3, 4), 10),
                   start=at(date(2027, 3, 5), 13), end=at(date(2027, 3, 5), 14), sequence=2)
LONG = replace(SLOT, summary="Sparringsforum for unge og voksne: æøå ÆØÅ " * 4,
               description="Linje ét\nLinje to; med komma, semikolon og \\ skråstreg " * 3)
CASES = {
    "single": ([SLOT], "REQUEST", TZ),
    "series with exdates": ([SERIES], "REQUEST", TZ),
    "cancelled": ([replace(SLOT, sequence=4, cancelled=True)], "CANCEL", TZ),
    "override": ([OVERRIDE], "REQUEST", TZ),
    "cancelled override": ([OVERRIDE], "CANCEL", TZ),
    "stored master and override": ([OVERRIDE, SERIES], None, TZ),
    "feed": ([SLOT, SERIES], "PUBLISH", TZ),
    "long lines folded": ([LONG], "REQUEST", TZ),
    "another year": ([replace(SLOT, start=at(date(2031, 2, 3), 9), end=at(date(2031, 2, 3), 10))], "REQUEST", TZ),
    "new york": ([SLOT], "REQUEST", ZoneInfo("America/New_York")),
    "utc": ([SLOT], "CANCEL", ZoneInfo("UTC")),
}


@pytest.mark.parametrize("case", CASES)
def test_to_ical_gives_exactly_the_bytes_icalendar_gives(case):
    meetings, method, tz = CASES[case]
    assert to_ical(meetings, method, tz, stamp=STAMP) == build_calendar(meetings, method, tz, stamp=STAMP).to_ical()


TEXT = st.text(st.sampled_from("abc æøå ÆØÅ,;:\\\"\n\t.-é€😀"), max_size=200)


@settings(max_examples=100, deadline=None)
@given(summary=TEXT, description=TEXT, location=TEXT, year=st.integers(2026, 2035))
def test_to_ical_gives_the_same_bytes_for_any_text_and_year(summary, description, location, year):
    start = at(date(year, 6, 10), 10, 10)
    meeting = replace(SLOT, summary=summary, description=description, location=location,
                      start=start, end=start + timedelta(minutes=10))
    assert to_ical([meeting], "REQUEST", TZ, stamp=STAMP) == build_calendar(
        [meeting], "REQUEST", TZ, stamp=STAMP).to_ical()


def test_a_changed_vtimezone_component_does_not_reach_later_output():
    before = to_ical([SLOT], "REQUEST", TZ, stamp=STAMP)
    vtimezone(TZ, 2027).add("x-changed", "yes")
    build_calendar([SLOT], "REQUEST", TZ, stamp=STAMP).walk("VTIMEZONE")[0].add("x-changed", "yes")
    after = to_ical([SLOT], "REQUEST", TZ, stamp=STAMP)
    assert after == before and b"X-CHANGED" not in after
    assert b"X-CHANGED" not in build_calendar([SLOT], "REQUEST", TZ, stamp=STAMP).to_ical()


def test_new_uids_are_distinct_and_hold_no_digits():
    from scheduler.model import new_uid

    uids = {new_uid("slot", "kommune.example") for _ in range(2000)}
    assert len(uids) == 2000
    assert not any(ch.isdigit() for uid in uids for ch in uid.partition("@")[0])


WEEKS = [date(2027, 1, 7) + timedelta(weeks=n) for n in range(25)]  # SERIES' Thursdays up to UNTIL


@settings(max_examples=60, deadline=None)
@given(moved=st.sets(st.sampled_from(WEEKS)), cancelled=st.lists(st.sampled_from(WEEKS), max_size=12))
def test_the_stored_series_lists_exactly_the_occurrences_not_cancelled(moved, cancelled):
    """Overrides put, occurrences cancelled (some twice, some moved first):
    an independent reader lists exactly the others, where they are."""
    from recurring_ical_events import of

    from scheduler.calendars.ical import assemble, cancel_events, put_events

    events, sequence = put_events([], SERIES, TZ, stamp=STAMP), 0
    for day in sorted(moved):
        sequence += 1
        start = at(day, 10)
        events = put_events(events, replace(SERIES, recurrence=None, recurrence_id=start, sequence=sequence,
                                            start=start + timedelta(hours=3), end=start + timedelta(hours=4)),
                            TZ, stamp=STAMP)
    for day in cancelled:
        sequence += 1
        start = at(day, 10)
        events = cancel_events(events, replace(SERIES, recurrence=None, recurrence_id=start, start=start,
                                               end=start + timedelta(hours=1), sequence=sequence, cancelled=True),
                               TZ, stamp=STAMP)
    calendar = Calendar.from_ical(assemble(events, TZ).to_ical())
    listed = sorted(e.decoded("DTSTART") for e in of(calendar).between(at(WEEKS[0], 0), at(WEEKS[-1], 23)))
    gone = set(cancelled) | {d.date() for d in SERIES.recurrence.exdates}
    expected = sorted(at(d, 13 if d in moved else 10) for d in WEEKS if d not in gone)
    assert listed == expected
    assert all(str(e["STATUS"]) == "CONFIRMED" for e in calendar.walk("VEVENT"))
