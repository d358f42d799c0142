"""Free/busy from .ics files: one person's exported calendar (Outlook style,
with its own VTIMEZONE), a VFREEBUSY answer, and the local backend's
per-person folder with sparring's own events beside it."""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from scheduler.calendars import local as local_backend
from scheduler.calendars.freebusy import parse_busy, parse_calendar
from scheduler.calendars.local import LocalCalendar
from scheduler.model import Attendee, BusyInterval, BusyKind, Meeting

TZ = ZoneInfo("Europe/Copenhagen")
FIXTURES = Path(__file__).parent / "fixtures" / "freebusy"
START = datetime(2027, 3, 1, tzinfo=TZ)
END = datetime(2027, 4, 5, tzinfo=TZ)
BUSY, TENTATIVE, OOF, UNKNOWN = BusyKind.BUSY, BusyKind.TENTATIVE, BusyKind.OUT_OF_OFFICE, BusyKind.UNKNOWN


def z(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2027, month, day, hour, minute, tzinfo=timezone.utc)


def local(day: int, hour: int = 0, month: int = 3) -> datetime:
    return datetime(2027, month, day, hour, tzinfo=TZ)


def as_utc(intervals: list[BusyInterval]) -> list[tuple[datetime, datetime, BusyKind]]:
    return [(i.start.astimezone(timezone.utc), i.end.astimezone(timezone.utc), i.kind) for i in intervals]


ANNE = [
    (START.astimezone(timezone.utc), z(1, 1), BUSY),  # began the evening before: clipped to the window
    (z(1, 8), z(1, 9), BUSY),  # Monday series, 09:00 CET
    (z(2, 13), z(2, 13, 30), BUSY),  # UTC
    (z(3, 10, 30), z(3, 11), BUSY),  # floating 11:30 is local time
    (local(4).astimezone(timezone.utc), local(6).astimezone(timezone.utc), BUSY),  # two whole local days
    (z(8, 10), z(8, 11), BUSY),  # the override moved 09:00 to 11:00
    (z(11, 8), z(11, 9), TENTATIVE),
    (z(12, 7), z(12, 15), OOF),
    # 15 March is an EXDATE; the reminder is TRANSPARENT and 10 March CANCELLED
    (z(22, 8), z(22, 9), BUSY),
    (z(29, 7), z(29, 8), BUSY),  # summer time from 28 March: 09:00 CEST
]


def test_an_exported_calendar_with_every_kind_of_time():
    got = parse_busy((FIXTURES / "anne@kommune.example.ics").read_bytes(), START, END, tz=TZ)
    assert as_utc(got) == ANNE
    assert all(i.start.tzinfo == TZ for i in got)


def test_a_vfreebusy_answer_maps_fbtype():
    got = parse_busy((FIXTURES / "bo@kommune.example.ics").read_bytes(), START, END, tz=TZ)
    assert as_utc(got) == [
        (z(1, 8), z(1, 9), BUSY),  # no FBTYPE means BUSY
        (z(2, 8), z(2, 8, 30), TENTATIVE),
        (z(3, 8), z(3, 16), OOF),  # BUSY-UNAVAILABLE; FBTYPE=FREE is left out
    ]


def test_the_window_clips_and_filters():
    got = parse_busy((FIXTURES / "anne@kommune.example.ics").read_bytes(), local(12, 10), local(12, 12), tz=TZ)
    assert as_utc(got) == [(z(12, 9), z(12, 11), OOF)]


def test_not_icalendar_is_a_value_error_without_the_content():
    with pytest.raises(ValueError) as caught:
        parse_busy(b"0101901234 tuberkulose", START, END)
    assert "0101901234" not in str(caught.value)


def test_a_naive_window_is_refused():
    with pytest.raises(ValueError, match="time zones"):
        parse_busy((FIXTURES / "bo@kommune.example.ics").read_bytes(), datetime(2027, 3, 1), datetime(2027, 4, 1))


@pytest.fixture
def backend(tmp_path: Path) -> LocalCalendar:
    folder = tmp_path / "freebusy"
    shutil.copytree(FIXTURES, folder)
    return LocalCalendar(tmp_path / "calendar", folder, TZ,
                         clock=lambda: datetime(2027, 1, 1, tzinfo=timezone.utc))


def test_local_backend_reads_each_persons_file(backend):
    result = backend.free_busy(["anne@kommune.example", "Bo@Kommune.example"], START, END)
    assert as_utc(result["anne@kommune.example"]) == ANNE
    assert [i.kind for i in result["Bo@Kommune.example"]] == [BUSY, TENTATIVE, OOF]  # addresses ignore case


def test_local_backend_missing_file_is_unknown_over_the_window(backend):
    result = backend.free_busy(["carl@kommune.example", "../etc/passwd"], START, END)
    assert result["carl@kommune.example"] == [BusyInterval(START, END, UNKNOWN)]
    assert result["../etc/passwd"] == [BusyInterval(START, END, UNKNOWN)]


def test_local_backend_adds_sparrings_own_events_to_the_persons_file(backend):
    backend.put(Meeting(uid="slot-9@kommune.example", summary="Sparringsforum: din tid kl. 10.10",
                        start=local(18, 10), end=local(18, 11), organizer="sparring@kommune.example",
                        attendees=(Attendee("ANNE@kommune.example"), Attendee("carl@kommune.example"))))
    result = backend.free_busy(["anne@kommune.example", "carl@kommune.example"], START, END)
    assert (z(18, 9), z(18, 10), BUSY) in as_utc(result["anne@kommune.example"])
    assert as_utc(result["carl@kommune.example"]) == [
        (START.astimezone(timezone.utc), END.astimezone(timezone.utc), UNKNOWN),
        (z(18, 9), z(18, 10), BUSY),
    ]


def test_an_unreadable_persons_file_is_unknown_not_free(backend, tmp_path):
    (tmp_path / "freebusy" / "dora@kommune.example.ics").write_text("garbage")
    assert backend.free_busy(["dora@kommune.example"], START, END)["dora@kommune.example"] == [
        BusyInterval(START, END, UNKNOWN)]


def test_a_persons_file_is_parsed_once_until_it_changes(tmp_path, monkeypatch):
    parsed: list[bytes] = []

    def parse(data: bytes):
        parsed.append(data)
        return parse_calendar(data)

    monkeypatch.setattr(local_backend, "parse_calendar", parse)
    folder = tmp_path / "freebusy"
    shutil.copytree(FIXTURES, folder)
    anne = folder / "anne@kommune.example.ics"
    os.utime(anne, ns=(time.time_ns() - 3600 * 10**9,) * 2)  # not changed just now
    backend = LocalCalendar(tmp_path / "calendar", folder, TZ)
    assert as_utc(backend.free_busy(["anne@kommune.example"], START, END)["anne@kommune.example"]) == ANNE
    assert as_utc(backend.free_busy(["anne@kommune.example"], START, END)["anne@kommune.example"]) == ANNE
    assert len(parsed) == 1
    # Outlook exports anew: the file is replaced with one holding only Bo's VFREEBUSY
    replacement = folder / "new.tmp"
    shutil.copy(folder / "bo@kommune.example.ics", replacement)
    os.replace(replacement, anne)
    assert [i.kind for i in backend.free_busy(["anne@kommune.example"], START, END)["anne@kommune.example"]] == [
        BUSY, TENTATIVE, OOF]
    anne.unlink()
    assert backend.free_busy(["anne@kommune.example"], START, END)["anne@kommune.example"] == [
        BusyInterval(START, END, UNKNOWN)]
