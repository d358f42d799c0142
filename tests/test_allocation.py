"""Allocation of items to sessions: property tests over random arrivals, and the rule book's examples."""

from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.config import load_config
from scheduler.planning.allocation import Booked, Occupancy, Refusal, Request, age_on, allocate, slot_order
from scheduler.planning.sessions import Planner

TZ = ZoneInfo("Europe/Copenhagen")
CONFIG = load_config(Path(__file__).parent.parent / "config" / "sparring.toml")
PLANNER = Planner(CONFIG.all_series(), CONFIG.closed_days(), TZ)
SERIES = {s.id: s for s in CONFIG.all_series()}
START = datetime(2026, 12, 1, 8, tzinfo=TZ)
SESSIONS = PLANNER.sessions(START.date(), START.date() + timedelta(days=800))


def upcoming(after):
    return [s for s in SESSIONS if s.start > after]


def apply(booked, placement, item_id, request):
    if placement.replaces is not None:
        for key, items in booked.items():
            booked[key] = [b for b in items if b.item_id != placement.replaces]
    if placement.bumped is not None:
        bump = placement.bumped
        victim = next(b for b in booked[bump.from_key] if b.item_id == bump.item_id)
        booked[bump.from_key].remove(victim)
        booked.setdefault(bump.to.key, []).append(
            Booked(victim.item_id, bump.to.key, False, victim.received_at, victim.cpr_hash, victim.birth_date)
        )
    booked.setdefault(placement.session.key, []).append(
        Booked(item_id, placement.session.key, request.acute, request.received_at, request.cpr_hash, request.birth_date)
    )


arrivals = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=60 * 24 * 70),  # minutes after START
        st.dates(min_value=date(1950, 1, 1), max_value=date(2010, 12, 31)),
        st.integers(min_value=0, max_value=8),  # citizen id: repeats test replacement
        st.booleans(),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=80, deadline=None)
@given(arrivals)
def test_invariants_over_random_arrivals(raw):
    booked: dict[str, list[Booked]] = {}
    births: dict[int, date] = {}
    for item_id, (minutes, birth, citizen, acute) in enumerate(sorted(raw, key=lambda r: r[0])):
        birth = births.setdefault(citizen, birth)
        received = START + timedelta(minutes=minutes)
        request = Request(f"h{citizen}", birth, received, acute)
        result = allocate(request, upcoming(received), SERIES, booked)
        if isinstance(result, Refusal):
            assert result.code in {"under_age", "no_session"}
            if result.code == "under_age":
                assert age_on(birth, received.date()) < 15
            continue
        session = result.session
        assert session.planned and session.start > received
        assert SERIES[session.series_id].serves_age(age_on(birth, session.start.date()))
        if not acute:
            assert received <= session.deadline
        assert result.moved == (session.key != result.first_reachable.key)
        assert result.first_reachable.start <= session.start
        if not acute and result.replaces is None:
            # no earlier session for this age, still open and with room, was skipped
            for earlier in upcoming(received):
                if earlier.start >= session.start:
                    break
                serves = SERIES[earlier.series_id].serves_age(age_on(birth, earlier.start.date()))
                if serves and earlier.planned and received <= earlier.deadline:
                    assert len(booked.get(earlier.key, [])) >= earlier.capacity
        apply(booked, result, item_id, request)
        for key, items in booked.items():
            capacity = next(s.capacity for s in SESSIONS if s.key == key)
            assert len(items) <= capacity, key
            hashes = [b.cpr_hash for b in items]
            assert len(hashes) == len(set(hashes)), "one item per citizen per session"


def at(text):
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


YOUNG = date(2002, 5, 12)   # 24 in January 2027: weekly
ADULT = date(1985, 3, 1)    # 41: monthly


def test_before_deadline_accepted_after_deadline_moved_late():
    on_time = allocate(Request("a", YOUNG, at("2027-01-04T12:00:00")), upcoming(at("2027-01-04T12:00")), SERIES, {})
    assert on_time.session.start == at("2027-01-07T10:00") and not on_time.moved
    late = allocate(Request("a", YOUNG, at("2027-01-04T12:00:01")), upcoming(at("2027-01-04T12:00:01")), SERIES, {})
    assert late.session.start == at("2027-01-14T10:00") and late.moved
    assert late.why_moved(at("2027-01-04T12:00:01")) == "late"


def test_overflow_goes_to_next_session_and_says_full():
    received = at("2027-01-04T09:00")
    first = upcoming(received)[0]
    full = {first.key: [Booked(i, first.key, False, received, f"x{i}", YOUNG) for i in range(6)]}
    placed = allocate(Request("a", YOUNG, received), upcoming(received), SERIES, full)
    assert placed.session.start == at("2027-01-14T10:00") and placed.why_moved(received) == "full"


def test_turning_30_between_sessions_routes_by_age_on_session_date():
    # 30 on 13 Jan 2027 (monthly) but 29 on 7 Jan (weekly): the weekly comes first.
    birth = date(1997, 1, 10)
    placed = allocate(Request("a", birth, at("2027-01-04T09:00")), upcoming(at("2027-01-04T09:00")), SERIES, {})
    assert placed.session.series_id == "unge" and placed.session.start.date() == date(2027, 1, 7)
    # 30 on 8 Jan: the weekly of 7 Jan still serves (29), after its deadline the next is monthly 13 Jan.
    birth = date(1997, 1, 8)
    placed = allocate(Request("a", birth, at("2027-01-05T09:00")), upcoming(at("2027-01-05T09:00")), SERIES, {})
    assert placed.session.series_id == "voksne" and placed.session.start.date() == date(2027, 1, 13)


def test_29_on_monthly_date_and_30_on_next_weekly_waits_for_following_monthly():
    # Turns 30 on Thursday 14 Jan 2027: 29 on Wed 13 Jan (monthly: no), 30 on Thu 14 Jan (weekly: no).
    birth = date(1997, 1, 14)
    received = at("2027-01-08T09:00")
    placed = allocate(Request("a", birth, received), upcoming(received), SERIES, {})
    assert placed.session.series_id == "voksne" and placed.session.start.date() == date(2027, 2, 10)


def test_acute_takes_first_slot_and_bumps_latest_ordinary():
    received = at("2027-01-06T13:45")  # after the 7 Jan deadline
    first = upcoming(received)[0]
    assert first.start.date() == date(2027, 1, 7)
    items = [Booked(i, first.key, False, at("2027-01-04T08:00") + timedelta(minutes=i), f"x{i}", YOUNG) for i in range(6)]
    placed = allocate(Request("a", YOUNG, received, acute=True), upcoming(received), SERIES, {first.key: items})
    assert placed.session.key == first.key and not placed.moved
    assert placed.bumped.item_id == 5 and placed.bumped.to.start.date() == date(2027, 1, 14)
    order = slot_order(items[:5] + [Booked(99, first.key, True, received, "a", YOUNG)])
    assert order[0].item_id == 99


def test_replacement_keeps_one_item_per_citizen():
    received = at("2027-01-05T08:00")
    first = allocate(Request("c", YOUNG, received), upcoming(received), SERIES, {})
    booked = {first.session.key: [Booked(1, first.session.key, False, received, "c", YOUNG)]}
    again = allocate(Request("c", YOUNG, at("2027-01-07T11:59")), upcoming(at("2027-01-07T11:59")), SERIES, booked)
    assert again.session.key == first.session.key and again.replaces == 1


def test_under_15_refused():
    result = allocate(Request("k", date(2014, 9, 3), at("2027-01-05T15:05")), upcoming(at("2027-01-05T15:05")), SERIES, {})
    assert result == Refusal("under_age")


# -- the fast walk against the rule as written -----------------------------------


def rule_as_written(request, sessions, booked):
    """The rule book's walk, session by session, with no index: the oracle
    for ``allocate``, which skips full sessions without looking inside."""
    reachable = [s for s in sessions if s.planned and s.start > request.received_at
                 and SERIES[s.series_id].serves_age(age_on(request.birth_date, s.start.date()))]
    if age_on(request.birth_date, request.received_at.date()) < 15:
        return Refusal("under_age")
    if not reachable:
        return Refusal("no_session")
    for session in reachable:
        if not request.acute and request.received_at > session.deadline:
            continue
        here = booked.get(session.key, [])
        mine = [b for b in here if b.cpr_hash == request.cpr_hash]
        if mine:
            return ("replace", session.key, mine[0].item_id)
        if len(here) < session.capacity:
            return ("place", session.key, None)
        ordinary = [b for b in here if not b.acute]
        if request.acute and ordinary:
            victim = max(ordinary, key=lambda b: (b.received_at, b.item_id))
            room = [s for s in sessions if s.start > session.start and s.planned
                    and SERIES[s.series_id].serves_age(age_on(victim.birth(), s.start.date()))
                    and len(booked.get(s.key, [])) < s.capacity
                    and all(b.cpr_hash != victim.cpr_hash for b in booked.get(s.key, []))]
            return ("bump", session.key, None) if room else Refusal("no_session")
    return Refusal("no_session")


def summary(result):
    if isinstance(result, Refusal):
        return result
    if result.replaces is not None:
        return ("replace", result.session.key, result.replaces)
    return ("bump" if result.bumped else "place", result.session.key, None)


crowds = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=60 * 24 * 21),  # three weeks: sessions fill up
        st.sampled_from([YOUNG, ADULT, date(1997, 1, 14), date(1996, 12, 30)]),
        st.integers(min_value=0, max_value=40),
        st.booleans(),
    ),
    min_size=20,
    max_size=250,
)


@settings(max_examples=40, deadline=None)
@given(crowds, st.integers(min_value=1, max_value=6))
def test_allocate_agrees_with_the_rule_as_written_when_sessions_are_full(raw, capacity):
    """Many items for few slots: most arrivals walk past months of full
    sessions, which ``allocate`` skips through ``Occupancy``'s index."""
    sessions = [replace(s, capacity=min(s.capacity, capacity)) for s in SESSIONS[:40]]
    booked = Occupancy()
    births: dict[int, date] = {}
    for item_id, (minutes, birth, citizen, acute) in enumerate(sorted(raw, key=lambda r: r[0])):
        acute = acute and item_id % 7 == 0  # acute items are the exception
        birth = births.setdefault(citizen, birth)
        received = START + timedelta(minutes=minutes)
        request = Request(f"h{citizen}", birth, received, acute)
        later = [s for s in sessions if s.start > received]
        result = allocate(request, later, SERIES, booked)
        assert summary(result) == rule_as_written(request, later, {k: list(v) for k, v in booked.items()})
        if not isinstance(result, Refusal):
            plain = {k: list(v) for k, v in booked.items()}
            apply(plain, result, item_id, request)
            booked = Occupancy(b for items in plain.values() for b in items)


def test_occupancy_indexes_citizens_and_loads_sessions():
    first, second = SESSIONS[0], SESSIONS[1]
    occupancy = Occupancy([Booked(1, first.key, False, START, "a", YOUNG)])
    occupancy.load(second.key, [Booked(2, second.key, False, START, "a", YOUNG),
                                Booked(3, second.key, False, START, "b", YOUNG)])
    assert occupancy.holding("a") == {first.key, second.key}
    assert occupancy.holding("b") == {second.key} and occupancy.holding("c") == set()
    assert [b.item_id for b in occupancy[second.key]] == [2, 3]
    assert Occupancy.of(occupancy) is occupancy
    assert Occupancy.of({first.key: occupancy[first.key]}).holding("a") == {first.key}
