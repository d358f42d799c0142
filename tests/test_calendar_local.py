"""The local folder calendar: what the iCalendar-storing backends store
(``IcsCalendarContract``, also run against Radicale in test_caldav.py), and
what only the folder does (file names, atomic writes, damaged files, the
parsed files free/busy keeps). The contract of every calendar backend is
in test_calendar_contract.py."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import recurring_ical_events

from scheduler.calendars import local
from scheduler.calendars.ical import merge_cancel, merge_put, parse_object
from scheduler.calendars.local import LocalCalendar, ParsedFiles, file_name
from scheduler.model import Attendee, BusyKind, Meeting, Recurrence
from scheduler.ports import CalendarBackend, PermanentError, TransientError

TZ = ZoneInfo("Europe/Copenhagen")
FORUM = "sparring@kommune.example"
CASEWORKER = "sagsbehandler@kommune.example"
STAMP = datetime(2027, 1, 1, 9, tzinfo=timezone.utc)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


def single(uid: str = "slot-1@kommune.example", day: date = date(2027, 1, 7), **changes) -> Meeting:
    meeting = Meeting(
        uid=uid, summary="Sparringsforum: din tid kl. 10.10", start=at(day, 10, 10), end=at(day, 10, 20),
        organizer=FORUM, organizer_name="Sparringsforum", attendees=(Attendee(CASEWORKER),),
        location="Mødelokale 2, Rådhuset",
    )
    return replace(meeting, **changes)


SERIES_START = date(2027, 1, 7)  # a Thursday
SKIPPED = at(date(2027, 1, 14), 10)
SERIES = Meeting(
    uid="series-unge@kommune.example", summary="Sparringsforum for unge", start=at(SERIES_START, 10),
    end=at(SERIES_START, 11), organizer=FORUM, organizer_name="Sparringsforum",
    attendees=(Attendee("koordinator@kommune.example", "Koordinator"),),
    recurrence=Recurrence(interval=1, until=date(2027, 3, 25), exdates=(SKIPPED,)),
)
WINDOW = (at(date(2027, 1, 1), 0), at(date(2027, 2, 1), 0))


def busy(backend: CalendarBackend, address: str, window=WINDOW) -> list[tuple[datetime, datetime]]:
    """The BUSY intervals (UNKNOWN left out) as (start, end) in UTC."""
    result = backend.free_busy([address], *window)[address]
    return [(i.start.astimezone(timezone.utc), i.end.astimezone(timezone.utc))
            for i in result if i.kind is BusyKind.BUSY]


def utc(day: date, hour: int, minute: int = 0) -> datetime:
    return at(day, hour, minute).astimezone(timezone.utc)


def events(calendar) -> list:
    return list(calendar.walk("VEVENT"))


class IcsCalendarContract:
    """What the backends that store iCalendar objects (the folder, CalDAV) store;
    the contract every backend keeps is in test_calendar_contract.py.
    Subclasses provide the ``backend`` fixture."""

    def test_a_stored_object_is_not_an_itip_message_and_names_its_zone(self, backend):
        backend.put(single())
        stored = backend.read("slot-1@kommune.example")
        assert "METHOD" not in stored
        [event] = events(stored)
        assert str(event["uid"]) == "slot-1@kommune.example"
        assert event["dtstart"].params["TZID"] == "Europe/Copenhagen"
        assert event.decoded("dtstart") == at(date(2027, 1, 7), 10, 10)

    def test_a_change_keeps_its_sequence(self, backend):
        backend.put(single())
        backend.put(single(start=at(date(2027, 1, 7), 10, 30), end=at(date(2027, 1, 7), 10, 40), sequence=1))
        [event] = events(backend.read("slot-1@kommune.example"))
        assert event["sequence"] == 1

    def test_a_weekly_series_is_one_vevent_with_a_weekly_rule(self, backend):
        backend.put(SERIES)
        [event] = events(backend.read(SERIES.uid))
        assert event["rrule"]["FREQ"] == ["WEEKLY"]

    def test_an_override_is_a_vevent_with_recurrence_id_beside_the_master(self, backend):
        backend.put(SERIES)
        moved = replace(SERIES, recurrence=None, recurrence_id=at(date(2027, 1, 21), 10),
                        start=at(date(2027, 1, 22), 13), end=at(date(2027, 1, 22), 14), sequence=1)
        backend.put(moved)
        backend.put(replace(SERIES, summary="Sparringsforum for unge (nyt navn)", sequence=2))
        stored = events(backend.read(SERIES.uid))
        assert len(stored) == 2
        override = next(e for e in stored if "recurrence-id" in e)
        assert override.decoded("recurrence-id") == at(date(2027, 1, 21), 10)
        assert override["sequence"] == 1 and "rrule" not in override

    def test_a_cancelled_occurrence_is_folded_into_the_series(self, backend):
        backend.put(SERIES)
        occurrence = at(date(2027, 1, 28), 10)
        backend.cancel(replace(SERIES, recurrence=None, recurrence_id=occurrence, start=occurrence,
                               end=occurrence + timedelta(hours=1), sequence=1, cancelled=True))
        [master] = events(backend.read(SERIES.uid))  # folded into the series: no override left
        assert str(master["status"]) == "CONFIRMED" and master["sequence"] == 1

    def test_a_cancelled_occurrence_is_not_listed_by_an_independent_reader(self, backend):
        """recurring-ical-events lists a STATUS:CANCELLED override as an
        occurrence; the stored object must list exactly the open ones."""
        backend.put(SERIES)
        moved = replace(SERIES, recurrence=None, recurrence_id=at(date(2027, 1, 21), 10),
                        start=at(date(2027, 1, 22), 13), end=at(date(2027, 1, 22), 14), sequence=1)
        backend.put(moved)
        for day, sequence in ((date(2027, 1, 21), 2), (date(2027, 1, 28), 3), (date(2027, 1, 28), 3)):
            start = at(day, 10)
            backend.cancel(replace(SERIES, recurrence=None, recurrence_id=start, start=start,
                                   end=start + timedelta(hours=1), sequence=sequence, cancelled=True))
        stored = backend.read(SERIES.uid)
        listed = [e.decoded("dtstart") for e in
                  recurring_ical_events.of(stored).between(at(date(2027, 1, 1), 0), at(date(2027, 2, 12), 0))]
        assert listed == [at(date(2027, 1, 7), 10), at(date(2027, 2, 4), 10), at(date(2027, 2, 11), 10)]
        assert [e["sequence"] for e in events(stored)] == [3]

    def test_cancelling_a_whole_event_keeps_it_marked_cancelled(self, backend):
        backend.put(SERIES)
        backend.cancel(replace(SERIES, sequence=1, cancelled=True))
        stored = events(backend.read(SERIES.uid))
        assert [str(e["status"]) for e in stored] == ["CANCELLED"]
        assert "rrule" in stored[0]  # nothing silently lost

    def test_sparrings_own_slot_counts_beside_the_unknown_warning(self, backend):
        backend.put(single())
        kinds = [i.kind for i in backend.free_busy([CASEWORKER], *WINDOW)[CASEWORKER]]
        assert BusyKind.BUSY in kinds and BusyKind.UNKNOWN in kinds

    def test_the_forum_itself_is_known_through_its_own_calendar(self, backend):
        backend.put(single())
        result = backend.free_busy([FORUM], *WINDOW)[FORUM]
        assert BusyKind.UNKNOWN not in [i.kind for i in result]
        assert (utc(date(2027, 1, 7), 10, 10), utc(date(2027, 1, 7), 10, 20)) in busy(backend, FORUM)


class TestLocalIcs(IcsCalendarContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> LocalCalendar:
        return LocalCalendar(tmp_path / "calendar", tmp_path / "freebusy", TZ, clock=lambda: STAMP)


# -- the folder itself ----------------------------------------------------------


def test_file_names_are_safe_and_distinct():
    assert file_name("sparring-slot-7@kommune.example") == "sparring-slot-7@kommune.example.ics"
    assert "/" not in file_name("../../etc/passwd")
    assert not file_name("../x").startswith(".")
    assert file_name("a/b") != file_name("a_b")


def test_one_file_per_event_and_no_temporary_files_left(tmp_path):
    backend = LocalCalendar(tmp_path / "calendar", tmp_path / "freebusy", TZ, clock=lambda: STAMP)
    backend.put(SERIES)
    backend.put(replace(SERIES, recurrence=None, recurrence_id=at(date(2027, 1, 21), 10), sequence=1))
    backend.put(single())
    names = sorted(p.name for p in (tmp_path / "calendar").iterdir())
    assert names == ["series-unge@kommune.example.ics", "slot-1@kommune.example.ics"]


def test_a_damaged_file_is_a_permanent_error_naming_the_file_only(tmp_path):
    backend = LocalCalendar(tmp_path / "calendar", tmp_path / "freebusy", TZ, clock=lambda: STAMP)
    (tmp_path / "calendar").mkdir()
    (tmp_path / "calendar" / file_name("slot-1@kommune.example")).write_text("not a calendar")
    with pytest.raises(PermanentError, match="slot-1@kommune.example.ics is not valid iCalendar"):
        backend.put(single())
    # free/busy skips it rather than failing for everybody
    assert busy(backend, CASEWORKER) == []


def test_dtstamp_comes_from_the_clock_given(tmp_path):
    backend = LocalCalendar(tmp_path / "calendar", tmp_path / "freebusy", TZ, clock=lambda: STAMP)
    backend.put(single())
    [event] = events(backend.read("slot-1@kommune.example"))
    assert event.decoded("dtstamp") == STAMP


# -- free/busy keeps parsed files until they change ------------------------------


HOUR_NS = 3600 * 10**9


def age(folder: Path) -> None:
    """Set the files' mtime an hour back: a file changed just now is not kept
    (a second write in the same timestamp tick could look the same)."""
    for path in folder.glob("*.ics"):
        os.utime(path, ns=(time.time_ns() - HOUR_NS,) * 2)


def fresh(folder: Path) -> None:
    """Set the files' mtime to now on the test's clock: the kernel stamps
    writes with the real clock, which the travelled test clock is not."""
    for path in folder.glob("*.ics"):
        os.utime(path, ns=(time.time_ns(),) * 2)


@pytest.fixture
def counted(tmp_path, monkeypatch) -> tuple[LocalCalendar, list[bytes]]:
    """A backend whose every parse of a stored object is recorded."""
    parsed: list[bytes] = []

    def parse(data: bytes):
        parsed.append(data)
        return parse_object(data)

    monkeypatch.setattr(local, "parse_object", parse)
    return LocalCalendar(tmp_path / "calendar", tmp_path / "freebusy", TZ, clock=lambda: STAMP), parsed


def test_free_busy_parses_an_unchanged_file_once(counted, tmp_path):
    backend, parsed = counted
    backend.put(single())
    age(tmp_path / "calendar")
    first = backend.free_busy([CASEWORKER], *WINDOW)
    assert len(parsed) == 1
    assert backend.free_busy([CASEWORKER], *WINDOW) == first
    assert len(parsed) == 1


def test_a_file_changed_just_now_is_read_again_but_parsed_only_if_it_differs(counted, tmp_path, monkeypatch):
    backend, parsed = counted
    other = LocalCalendar(tmp_path / "calendar", tmp_path / "freebusy", TZ, clock=lambda: STAMP)
    monkeypatch.setattr(local, "_signature", lambda stat: (0, 0, 0))  # as if a rewrite kept inode, mtime, size
    backend.put(single())
    fresh(tmp_path / "calendar")
    backend.free_busy([CASEWORKER], *WINDOW)
    backend.free_busy([CASEWORKER], *WINDOW)
    assert len(parsed) == 1  # the same bytes
    other.put(single(start=at(date(2027, 1, 7), 10, 30), end=at(date(2027, 1, 7), 10, 40), sequence=1))
    fresh(tmp_path / "calendar")
    assert busy(backend, CASEWORKER) == [(utc(date(2027, 1, 7), 10, 30), utc(date(2027, 1, 7), 10, 40))]


def two_writers(tmp_path: Path) -> tuple[LocalCalendar, LocalCalendar]:
    """Two processes' view of one folder; the first has written a slot, long enough ago."""
    backend, other = (LocalCalendar(tmp_path / "calendar", tmp_path / "freebusy", TZ, clock=lambda: STAMP)
                      for _ in range(2))
    backend.put(single())
    age(tmp_path / "calendar")
    return backend, other


def test_free_busy_sees_a_file_rewritten_by_another_writer(tmp_path):
    backend, other = two_writers(tmp_path)
    assert busy(backend, CASEWORKER) == [(utc(date(2027, 1, 7), 10, 10), utc(date(2027, 1, 7), 10, 20))]
    other.put(single(start=at(date(2027, 1, 7), 10, 30), end=at(date(2027, 1, 7), 10, 40), sequence=1))
    assert busy(backend, CASEWORKER) == [(utc(date(2027, 1, 7), 10, 30), utc(date(2027, 1, 7), 10, 40))]


def test_free_busy_sees_a_new_file_and_forgets_a_removed_one(tmp_path):
    backend, other = two_writers(tmp_path)
    assert len(busy(backend, CASEWORKER)) == 1
    other.put(single(uid="slot-2@kommune.example", day=date(2027, 1, 8)))
    assert len(busy(backend, CASEWORKER)) == 2
    (tmp_path / "calendar" / file_name("slot-1@kommune.example")).unlink()
    assert busy(backend, CASEWORKER) == [(utc(date(2027, 1, 8), 10, 10), utc(date(2027, 1, 8), 10, 20))]


def test_the_cache_forgets_removed_files(tmp_path):
    files = ParsedFiles(parse_object)
    folder = tmp_path / "calendar"
    LocalCalendar(folder, tmp_path / "freebusy", TZ, clock=lambda: STAMP).put_many(
        [single(), single(uid="slot-2@kommune.example")])
    age(folder)
    paths = sorted(folder.glob("*.ics"))
    for path in paths:
        files.get(path)
    assert len(files) == 2
    files.keep_only(paths[1:])
    assert len(files) == 1


def test_an_object_read_for_writing_is_not_the_one_free_busy_keeps(tmp_path):
    backend = LocalCalendar(tmp_path / "calendar", tmp_path / "freebusy", TZ, clock=lambda: STAMP)
    backend.put(single())
    age(tmp_path / "calendar")
    before = busy(backend, CASEWORKER)
    [event] = events(backend.read("slot-1@kommune.example"))
    event["status"] = "CANCELLED"  # a caller may change what read() gives
    assert busy(backend, CASEWORKER) == before


def test_a_cancel_that_fails_to_write_leaves_free_busy_as_the_file_is(tmp_path, monkeypatch):
    # merge_cancel marks the events it is given: they must not be free/busy's.
    backend = LocalCalendar(tmp_path / "calendar", tmp_path / "freebusy", TZ, clock=lambda: STAMP)
    backend.put(SERIES)
    age(tmp_path / "calendar")
    before = busy(backend, "koordinator@kommune.example")
    assert before

    def refuse(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local.os, "replace", refuse)
    with pytest.raises(TransientError):
        backend.cancel(replace(SERIES, sequence=1, cancelled=True))
    assert busy(backend, "koordinator@kommune.example") == before


def test_a_file_damaged_after_it_was_kept_is_skipped(tmp_path, caplog):
    backend = LocalCalendar(tmp_path / "calendar", tmp_path / "freebusy", TZ, clock=lambda: STAMP)
    backend.put(single())
    age(tmp_path / "calendar")
    assert busy(backend, CASEWORKER)
    (tmp_path / "calendar" / file_name("slot-1@kommune.example")).write_text("not a calendar")
    assert busy(backend, CASEWORKER) == []
    assert "slot-1@kommune.example.ics is not valid iCalendar" in caplog.text


def test_a_write_under_way_in_another_process_is_not_read(tmp_path, caplog):
    backend = LocalCalendar(tmp_path / "calendar", tmp_path / "freebusy", TZ, clock=lambda: STAMP)
    backend.put(single())
    (tmp_path / "calendar" / ".tmp-half-written.ics").write_text("BEGIN:VCALENDAR\r\nBEGIN:VEV")
    assert len(busy(backend, CASEWORKER)) == 1
    assert "not valid iCalendar" not in caplog.text


def test_sparrings_own_rewrite_is_noticed_even_where_stat_looks_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "_signature", lambda stat: (0, 0, 0))  # a file system whose stat says nothing
    monkeypatch.setattr(local, "_RACY_NS", 0)
    backend = LocalCalendar(tmp_path / "calendar", tmp_path / "freebusy", TZ, clock=lambda: STAMP)
    backend.put(single())
    assert busy(backend, CASEWORKER) == [(utc(date(2027, 1, 7), 10, 10), utc(date(2027, 1, 7), 10, 20))]
    backend.put(single(start=at(date(2027, 1, 7), 10, 30), end=at(date(2027, 1, 7), 10, 40), sequence=1))
    assert busy(backend, CASEWORKER) == [(utc(date(2027, 1, 7), 10, 30), utc(date(2027, 1, 7), 10, 40))]


def test_the_files_hold_the_bytes_icalendar_gives_for_the_merged_object(tmp_path):
    backend = LocalCalendar(tmp_path / "calendar", tmp_path / "freebusy", TZ, clock=lambda: STAMP)
    stored = tmp_path / "calendar" / file_name(SERIES.uid)
    moved = replace(SERIES, recurrence=None, recurrence_id=at(date(2027, 1, 21), 10),
                    start=at(date(2027, 1, 22), 13), end=at(date(2027, 1, 22), 14), sequence=1)
    cancelled = replace(moved, recurrence_id=at(date(2027, 1, 28), 10), start=at(date(2027, 1, 28), 10),
                        end=at(date(2027, 1, 28), 11), cancelled=True)
    steps = [
        (lambda: backend.put(SERIES), lambda old: merge_put(old, SERIES, TZ, stamp=STAMP)),
        (lambda: backend.put(moved), lambda old: merge_put(old, moved, TZ, stamp=STAMP)),
        (lambda: backend.cancel(cancelled), lambda old: merge_cancel(old, cancelled, TZ, stamp=STAMP)),
        (lambda: backend.put_many([replace(SERIES, sequence=2), replace(moved, sequence=2)]),
         lambda old: merge_put(merge_put(old, replace(SERIES, sequence=2), TZ, stamp=STAMP),
                               replace(moved, sequence=2), TZ, stamp=STAMP)),
        (lambda: backend.cancel(replace(SERIES, sequence=3, cancelled=True)),
         lambda old: merge_cancel(old, replace(SERIES, sequence=3, cancelled=True), TZ, stamp=STAMP)),
    ]
    for write, merge in steps:
        old = parse_object(stored.read_bytes()) if stored.exists() else None
        write()
        assert stored.read_bytes() == merge(old).to_ical()


def test_a_simulation_writes_in_place_and_free_busy_follows(tmp_path):
    backend = LocalCalendar(tmp_path / "calendar", tmp_path / "freebusy", TZ, clock=lambda: STAMP, durable=False)
    backend.put(single())
    assert busy(backend, CASEWORKER) == [(utc(date(2027, 1, 7), 10, 10), utc(date(2027, 1, 7), 10, 20))]
    backend.put(single(start=at(date(2027, 1, 7), 10, 30), end=at(date(2027, 1, 7), 10, 40), sequence=1))
    assert busy(backend, CASEWORKER) == [(utc(date(2027, 1, 7), 10, 30), utc(date(2027, 1, 7), 10, 40))]
    assert os.listdir(tmp_path / "calendar") == [file_name("slot-1@kommune.example")]
