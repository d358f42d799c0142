"""The rule core: sessions, deadlines and closed days (issue 2)."""

from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.config import load_config
from scheduler.model import SessionStatus
from scheduler.planning.closures import ClosedDays
from scheduler.planning.sessions import Planner

TZ = ZoneInfo("Europe/Copenhagen")
CONFIG = load_config(Path(__file__).parent.parent / "config" / "sparring.toml")
PLANNER = Planner(CONFIG.all_series(), CONFIG.closed_days(), TZ)
CLOSED: ClosedDays = PLANNER.closed

days = st.dates(min_value=date(2024, 1, 1), max_value=date(2032, 12, 31))
ranges = st.tuples(days, st.integers(min_value=0, max_value=400)).map(
    lambda t: (t[0], t[0] + timedelta(days=t[1]))
)


def plan(first, last, series=None):
    return PLANNER.sessions(first, last, series)


@settings(max_examples=60, deadline=None)
@given(ranges)
def test_monthly_is_first_even_week_wednesday_at_14(span):
    sessions = plan(*span, "voksne")
    months = [(s.start.year, s.start.month) for s in sessions]
    assert len(months) == len(set(months)), "at most one per month"
    for s in sessions:
        assert s.start.weekday() == 2 and s.start.timetz() == time(14, tzinfo=TZ)
        assert s.start.isocalendar().week % 2 == 0
        assert s.end - s.start == timedelta(minutes=30) and s.capacity == 3
        earlier = s.start.date() - timedelta(days=7)
        while earlier.month == s.start.month:  # no earlier even-week Wednesday that month
            assert earlier.isocalendar().week % 2 == 1
            earlier -= timedelta(days=7)


@settings(max_examples=60, deadline=None)
@given(ranges)
def test_weekly_same_weekday_and_local_time(span):
    sessions = plan(*span, "unge")
    for s in sessions:
        assert s.start.weekday() == 3
        assert (s.start.hour, s.start.minute) == (10, 0)
        assert s.end - s.start == timedelta(hours=1) and s.capacity == 6
    for a, b in zip(sessions, sessions[1:]):
        assert (b.start.date() - a.start.date()).days == 7


@settings(max_examples=60, deadline=None)
@given(ranges)
def test_deadlines_before_session_on_working_day_at_noon(span):
    for s in plan(*span):
        assert s.deadline < s.start
        assert s.deadline.timetz() == time(12, tzinfo=TZ)
        assert CLOSED.is_working_day(s.deadline.date())
        assert CLOSED.is_open_at(s.deadline.date(), time(12))


@settings(max_examples=60, deadline=None)
@given(ranges)
def test_no_planned_session_on_closed_day_and_cancelled_ones_say_why(span):
    for s in plan(*span):
        open_ = CLOSED.is_open_at(s.start.date(), s.start.time(), s.end.time())
        if s.status is SessionStatus.PLANNED:
            assert open_
        else:
            assert not open_ and s.note


@settings(max_examples=30, deadline=None)
@given(ranges)
def test_sorted_and_inside_range(span):
    sessions = plan(*span)
    assert [s.start for s in sessions] == sorted(s.start for s in sessions)
    assert all(span[0] <= s.start.date() <= span[1] for s in sessions)


def test_week_53_of_2026_is_odd_and_next_monthly_is_13_january():
    assert date(2026, 12, 30).isocalendar().week == 53
    after = [s.start.date() for s in plan(date(2026, 12, 10), date(2027, 2, 28), "voksne")]
    assert after[0] == date(2027, 1, 13)
    assert plan(date(2026, 12, 1), date(2026, 12, 31), "voksne")[0].start.date() == date(2026, 12, 9)


def test_dst_keeps_local_time():
    spring = plan(date(2027, 3, 20), date(2027, 4, 3), "unge")
    autumn = plan(date(2026, 10, 20), date(2026, 11, 3), "unge")
    for s in spring + autumn:
        assert s.start.strftime("%H:%M") == "10:00"
    assert {s.start.utcoffset() for s in spring} == {timedelta(hours=1), timedelta(hours=2)}
    assert {s.start.utcoffset() for s in autumn} == {timedelta(hours=1), timedelta(hours=2)}


def test_easter_2026_deadline_on_2_paaskedag_moves_back():
    # Thursday 9 April 2026: deadline would be Monday 6 April (Anden påskedag);
    # Friday 3 and Thursday 2 April are holidays too, so Wednesday 1 April.
    session = plan(date(2026, 4, 9), date(2026, 4, 9), "unge")[0]
    assert session.deadline == datetime(2026, 4, 1, 12, tzinfo=TZ)
    skaertorsdag = plan(date(2026, 4, 2), date(2026, 4, 2), "unge")[0]
    assert skaertorsdag.status is SessionStatus.CANCELLED and skaertorsdag.note == "Skærtorsdag"


def test_christmas_sessions_cancelled_with_danish_names():
    sessions = {s.start.date(): s for s in plan(date(2026, 12, 20), date(2027, 1, 3), "unge")}
    assert sessions[date(2026, 12, 24)].note == "Juleaftensdag"
    assert sessions[date(2026, 12, 31)].note == "Nytårsaftensdag"
    assert all(s.status is SessionStatus.CANCELLED for s in sessions.values())


def test_1_may_afternoon_closed_morning_open():
    assert not CLOSED.is_open_at(date(2030, 5, 1), time(14), time(14, 30))
    assert CLOSED.is_open_at(date(2030, 5, 1), time(10), time(11))
    # Deadline at 12:00 on 1 May (closed from 12:00) moves to the previous working day.
    # Thursday 4 May 2028 session: deadline Monday 1 May 2028 -> Friday 28 April.
    session = plan(date(2028, 5, 4), date(2028, 5, 4), "unge")[0]
    assert session.deadline == datetime(2028, 4, 28, 12, tzinfo=TZ)


def test_monthly_on_afternoon_closure_is_cancelled():
    # 5 June 2030 is a Wednesday in ISO week 23 (odd); 1 May 2030 a Wednesday in week 18.
    may = plan(date(2030, 5, 1), date(2030, 5, 31), "voksne")[0]
    assert may.start.date() == date(2030, 5, 1)
    assert may.status is SessionStatus.CANCELLED and may.note == "Arbejdernes kampdag"


def test_store_bededag_gone_from_2024():
    assert CLOSED.closure(date(2023, 5, 5)) is not None
    assert CLOSED.closure(date(2024, 4, 26)) is None


def test_move_policy_moves_to_next_open_day():
    from dataclasses import replace

    from scheduler.model import OnClosed

    series = tuple(replace(s, on_closed=OnClosed.MOVE) for s in CONFIG.all_series())
    planner = Planner(series, CLOSED, TZ)
    moved = planner.sessions(date(2026, 12, 24), date(2026, 12, 31), "unge")
    assert [s.start.date() for s in moved] == [date(2026, 12, 28)]
    assert moved[0].note.startswith("Flyttet fra 2026-12-24") and moved[0].key == "unge/2026-12-24"


def test_plan_cli_json_contract(capsys):
    from scheduler.cli import main

    assert main(["plan", "--from", "2026-12-01", "--to", "2027-01-31", "--json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    assert set(rows[0]) == {"series", "start", "end", "deadline", "capacity", "status", "note"}
    monthly = [r for r in rows if r["series"] == "voksne"]
    assert [r["start"] for r in monthly] == ["2026-12-09T14:00:00+01:00", "2027-01-13T14:00:00+01:00"]
    assert monthly[1]["deadline"] == "2027-01-11T12:00:00+01:00"
    assert monthly[1]["capacity"] == 3 and monthly[1]["status"] == "planned"
    assert {r["status"] for r in rows} == {"planned", "cancelled"}


def test_plan_whole_contract_range_runs(capsys):
    from scheduler.cli import main

    assert main(["plan", "--from", "2026-01-01", "--to", "2030-12-31", "--json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    assert len([r for r in rows if r["series"] == "voksne"]) <= 60
    assert len(rows) > 250


def test_plan_cli_errors_are_one_sentence(capsys):
    from scheduler.cli import main

    assert main(["plan", "--from", "2027-01-10", "--to", "2027-01-01"]) == 1
    assert main(["plan", "--from", "2027-01-01", "--to", "2027-01-10", "--series", "x"]) == 1
    assert main(["--now", "tomorrow", "plan", "--from", "2027-01-01", "--to", "2027-01-02"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and "Traceback" not in err
