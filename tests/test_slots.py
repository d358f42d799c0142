"""The slot finder (issue 6, item 1): examples and the brute-force oracle."""

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.errors import UserError
from scheduler.model import BusyInterval, BusyKind
from scheduler.planning import slots_reference
from scheduler.planning.closures import AnnualClosure, ClosedDays
from scheduler.planning.slots import SlotRequest, find_slots, spread_indices, unknown_warning

TZ = ZoneInfo("Europe/Copenhagen")
ANNUAL = (AnnualClosure(12, 24, "Juleaftensdag"), AnnualClosure(5, 1, "Arbejdernes kampdag", time(12)))
CLOSED = ClosedDays(annual=ANNUAL)
ALWAYS = ClosedDays(annual=ANNUAL, working_weekdays=frozenset(range(7)))  # DST changes fall on Sundays
M = timedelta(minutes=1)


def at(day: str, hhmm: str = "00:00") -> datetime:
    return datetime.combine(date.fromisoformat(day), time.fromisoformat(hhmm), tzinfo=TZ)


def busy(day: str, start: str, end: str, kind: BusyKind = BusyKind.BUSY) -> BusyInterval:
    return BusyInterval(at(day, start), at(day, end), kind)


def request(first: str, last: str, minutes: int = 30, **kw) -> SlotRequest:
    kw.setdefault("required", ("a@kommune.dk",))
    kw.setdefault("busy", {a: [] for a in kw["required"] + kw.get("optional", ())})
    return SlotRequest(at(first), at(last, "23:59"), timedelta(minutes=minutes), **kw)


def starts(req: SlotRequest, limit: int = 5) -> list[str]:
    found = find_slots(req, CLOSED, TZ, limit)
    assert found == slots_reference.find_slots(req, CLOSED, TZ, limit)
    return [c.start.isoformat(timespec="minutes") for c in found]


# Examples -----------------------------------------------------------------

def test_required_busy_blocks_and_tentative_and_oof_count_as_busy():
    req = request("2025-03-04", "2025-03-04", required=("a@x", "b@x"), busy={
        "a@x": [busy("2025-03-04", "09:00", "10:00")],
        "b@x": [busy("2025-03-04", "10:00", "10:30", BusyKind.TENTATIVE),
                busy("2025-03-04", "11:00", "12:00", BusyKind.OUT_OF_OFFICE)],
    })
    assert starts(req, 4) == [f"2025-03-04T{t}+01:00" for t in ("10:30", "12:00", "12:15", "12:30")]


def test_buffer_must_be_free_before_and_after():
    day = "2025-03-04"
    req = request(day, day, 60, buffer=timedelta(minutes=15),
                  busy={"a@kommune.dk": [busy(day, "09:00", "10:00"), busy(day, "12:00", "15:00")]})
    assert starts(req) == [f"{day}T10:15+01:00", f"{day}T10:30+01:00", f"{day}T10:45+01:00"]
    overnight = request(day, day, 60, buffer=timedelta(hours=14),
                        busy={"a@kommune.dk": [busy("2025-03-03", "17:00", "20:00")]})
    assert starts(overnight, 1) == [f"{day}T10:00+01:00"]  # 14 hours after 20:00 the day before


def test_half_day_first_of_may_nothing_after_noon():
    found = find_slots(request("2025-05-01", "2025-05-01", 30), CLOSED, TZ, limit=50)
    assert found and max(c.end for c in found) == at("2025-05-01", "12:00")
    assert min(c.start for c in found) == at("2025-05-01", "09:00")


def test_easter_days_and_weekend_closed():
    req = request("2025-04-16", "2025-04-22", 60, busy={"a@kommune.dk": [busy("2025-04-16", "09:00", "14:00")]})
    assert starts(req, 3) == ["2025-04-16T14:00+02:00", "2025-04-22T09:00+02:00", "2025-04-22T09:15+02:00"]
    assert find_slots(request("2025-04-17", "2025-04-21"), CLOSED, TZ) == []


def test_weekend_skipped():
    req = SlotRequest(at("2025-03-07", "14:31"), at("2025-03-12"), timedelta(hours=1), ("a@x",), {"a@x": []})
    assert starts(req, 1) == ["2025-03-10T09:00+01:00"]


def test_nine_local_on_both_sides_of_dst_changes():
    for before, after in (("2025-03-28", "2025-03-31"), ("2025-10-24", "2025-10-27")):
        req = request(before, after, 60, strategy="spread")
        found = find_slots(req, CLOSED, TZ, limit=2)
        assert [c.start.date().isoformat() for c in found] == [before, after]
        assert all(c.start.timetz().replace(tzinfo=None) == time(9) for c in found)
        assert found[0].start.utcoffset() != found[1].start.utcoffset()
        assert found[1].end - found[1].start == timedelta(hours=1)


def test_repeated_autumn_hour_is_compared_in_elapsed_time():
    start = datetime(2025, 10, 26, 2, 50, tzinfo=TZ)  # first 02:50 (summer time), 00:50 UTC
    utc = lambda h, m: datetime(2025, 10, 26, h, m, tzinfo=timezone.utc).astimezone(TZ)  # noqa: E731
    meeting = BusyInterval(utc(0, 30), utc(1, 10))  # ends at the second 02:10 (winter time)
    req = SlotRequest(start, start + timedelta(hours=3), 10 * M, ("a@x",), {"a@x": [meeting]},
                      working_hours=(time(0), time(23, 59)), grid=10 * M)
    found = find_slots(req, ALWAYS, TZ, 2)
    assert found == slots_reference.find_slots(req, ALWAYS, TZ, 2)
    assert [c.start.isoformat() for c in found] == ["2025-10-26T03:00:00+01:00", "2025-10-26T03:10:00+01:00"]


def test_spring_forward_gap_times_are_no_grid_points():
    req = SlotRequest(at("2025-03-30"), at("2025-03-30", "23:00"), 30 * M, ("a@x",), {"a@x": []},
                      working_hours=(time(1, 30), time(4)), grid=30 * M)
    found = find_slots(req, ALWAYS, TZ, 5)
    assert found == slots_reference.find_slots(req, ALWAYS, TZ, 5)
    assert [c.start.isoformat(timespec="minutes") for c in found] == [
        "2025-03-30T01:30+01:00", "2025-03-30T03:00+02:00", "2025-03-30T03:30+02:00"]


def test_optional_preferred_only_within_the_same_day():
    tue, wed = "2025-03-04", "2025-03-05"
    req = request(tue, wed, optional=("o1@x", "o2@x"), busy={
        "a@kommune.dk": [busy(tue, "09:00", "13:00")],
        "o1@x": [busy(tue, "13:00", "14:00")],
        "o2@x": [busy(tue, "09:00", "15:00")],
    })
    found = find_slots(req, CLOSED, TZ, limit=5)
    assert found == slots_reference.find_slots(req, CLOSED, TZ, limit=5)
    assert [(c.start, c.optional_free_who) for c in found[:3]] == [
        (at(tue, "14:00"), ("o1@x",)), (at(tue, "14:15"), ("o1@x",)), (at(tue, "14:30"), ("o1@x",)),
    ]
    assert [c.start.date() for c in found] == [date(2025, 3, 4)] * 5  # Wednesday (all free) never wins


def test_unknown_required_warns_and_unknown_optional_is_not_free():
    day = "2025-03-04"
    req = request(day, day, required=("a@x", "b@x"), optional=("o@x", "gone@x"), busy={
        "a@x": [busy(day, "09:00", "15:00", BusyKind.UNKNOWN)],
        "o@x": [busy(day, "09:00", "15:00", BusyKind.UNKNOWN)],
    })
    best = find_slots(req, CLOSED, TZ, limit=1)[0]
    assert best.start == at(day, "09:00") and best.optional_free == 0
    assert best.warnings == (unknown_warning("a@x"), unknown_warning("b@x"))  # b@x: no answer at all
    assert "a@x" in best.warnings[0] and "kunne ikke ses" in best.warnings[0]
    assert "could not be seen" in unknown_warning("a@x", "en")


def test_rooms_first_free_one_taken_and_none_free_means_no_slot():
    day = "2025-03-04"
    rooms = {"Lokale 1": [busy(day, "09:00", "10:00")], "Lokale 2": []}
    found = find_slots(request(day, day, rooms=rooms), CLOSED, TZ, limit=50)
    assert found[0].room == "Lokale 2" and found[-1].room == "Lokale 1"
    full = {"Lokale 1": [busy(day, "00:00", "23:00", BusyKind.UNKNOWN)]}
    assert find_slots(request(day, day, rooms=full), CLOSED, TZ) == []


def test_no_slot_is_an_empty_list():
    day = "2025-03-04"
    req = request(day, day, busy={"a@kommune.dk": [busy(day, "08:00", "14:45")]})
    assert find_slots(req, CLOSED, TZ) == [] == slots_reference.find_slots(req, CLOSED, TZ)


def test_spread_takes_the_best_of_days_spread_evenly():
    assert spread_indices(10, 3) == [0, 5, 9] and spread_indices(2, 5) == [0, 1]
    assert spread_indices(7, 4) == [0, 2, 4, 6] and spread_indices(9, 1) == [0]
    found = find_slots(request("2025-03-03", "2025-03-14", strategy="spread"), CLOSED, TZ, limit=3)
    assert [c.start for c in found] == [at(d, "09:00") for d in ("2025-03-03", "2025-03-10", "2025-03-14")]


def test_invalid_requests_are_one_sentence_user_errors():
    with pytest.raises(UserError, match="time zone"):
        find_slots(SlotRequest(datetime(2025, 3, 4), at("2025-03-05"), M, ("a",), {}), CLOSED, TZ)
    with pytest.raises(UserError, match="positive"):
        find_slots(request("2025-03-04", "2025-03-04", 0), CLOSED, TZ)


# The oracle ---------------------------------------------------------------

ANCHORS = [date(2025, 3, 24), date(2025, 4, 14), date(2025, 4, 28), date(2025, 10, 20),
           date(2025, 12, 20), date(2026, 3, 23)]  # DST changes, Easter, 1 May, Christmas
KINDS = st.sampled_from([BusyKind.BUSY] * 3 + [BusyKind.TENTATIVE, BusyKind.OUT_OF_OFFICE, BusyKind.UNKNOWN])
PEOPLE = ["p1", "p2", "p3", "p4", "p5", "p6"]


@st.composite
def intervals(draw, origin: datetime, span_minutes: int):
    out = []
    for _ in range(draw(st.integers(0, 10))):
        shape = draw(st.integers(0, 9))  # mostly meetings, some multi-day absences, some improper
        if shape < 3:  # anywhere, night and DST changes included
            start = origin.astimezone(timezone.utc) + draw(st.integers(-600, span_minutes)) * M
        else:  # a meeting in office hours on a 5-minute step (edges meet the grid), crowding the first days
            day = origin.date() + timedelta(days=draw(st.integers(0, min(span_minutes // 1440, 3))))
            start = datetime.combine(day, time(draw(st.integers(8, 15)), 5 * draw(st.integers(0, 11))), TZ)
        length = draw(
            st.integers(-30, 0) if shape == 0
            else st.integers(0, 4000) if shape == 1
            else st.integers(1, 240) if shape == 2
            else st.integers(1, 36).map(lambda n: 5 * n)
        )
        zone = draw(st.sampled_from([TZ, TZ, timezone.utc]))  # same zone is the common case
        start = start.astimezone(timezone.utc)  # elapsed-time arithmetic
        out.append(BusyInterval(start.astimezone(zone), (start + length * M).astimezone(zone), draw(KINDS)))
    return out


@st.composite
def requests(draw):
    day = draw(st.sampled_from(ANCHORS)) + timedelta(days=draw(st.integers(0, 10)))
    origin = datetime.combine(day, time(0), tzinfo=TZ) + draw(st.integers(0, 24 * 60)) * M
    span = draw(st.one_of(st.integers(60, 24 * 60), st.integers(24 * 60, 21 * 24 * 60)))
    grid = draw(st.sampled_from([10, 15, 15, 30]))
    people = draw(st.permutations(PEOPLE))
    n_req = draw(st.integers(1, 3))
    required, optional = tuple(people[:n_req]), tuple(people[n_req:n_req + draw(st.integers(0, 3))])
    known = [p for p in people if draw(st.integers(0, 9)) > 0]  # sometimes no free/busy at all
    nights = [(time(0), time(23, 59)), (time(1, 30), time(4))]  # DST changes inside working hours
    hours = draw(st.sampled_from([(time(9), time(15))] * 4 + [(time(8, 5), time(16))] + nights))
    room_names = draw(st.sampled_from([(), ("R1",), ("R1", "R2")]))
    return SlotRequest(
        window_start=origin,
        window_end=(origin.astimezone(timezone.utc) + span * M).astimezone(TZ),
        duration=grid * draw(st.integers(1, 8)) * M,
        required=required,
        optional=optional,
        busy={p: draw(intervals(origin, span)) for p in known},
        working_hours=hours,
        grid=grid * M,
        buffer=draw(st.sampled_from([0, 0, 5, 15, 30])) * M,
        rooms={r: draw(intervals(origin, span)) for r in room_names},
        strategy=draw(st.sampled_from(["earliest", "spread"])),
    )


def shown(found):
    return [(c.start.isoformat(), c.end.isoformat(), c.optional_free_who, c.room, c.warnings) for c in found]


@settings(max_examples=400, deadline=None)
@given(requests(), st.sampled_from([CLOSED, CLOSED, ALWAYS]), st.integers(1, 6))
def test_same_answers_as_the_brute_force(req, closed, limit):
    expected = slots_reference.find_slots(req, closed, TZ, limit)
    assert shown(find_slots(req, closed, TZ, limit)) == shown(expected)
