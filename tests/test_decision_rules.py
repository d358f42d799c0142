"""The pure parts of the forum's decisions: reading a reply's lines, and where ``udsat`` puts an item."""

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.mail.decisions import find_reference, read_decisions, reference
from scheduler.planning.allocation import Booked, Refusal, postpone, slot_order
from tests.test_allocation import SERIES, SESSIONS, START, TZ  # noqa: F401 - the rule book's sessions


def test_a_reply_is_read_line_by_line_and_other_lines_are_left_alone():
    found, bad = read_decisions([
        "Hej alle", "", "1: opstart", "2: Opstart modtager: Rikke@Kommune.example - haster",
        "3: intet grundlag - borgeren er flyttet", "Punkt 4: udsat", "5. henvist Jobcenter Nord – ring først",
        "6: opstart [modtager: bo@kommune.example]", "7: måske", "8: henvist", "9: udsat i morgen",
        "10: opstart modtager: ikke-en-adresse", "14. januar var et godt møde", "Venlig hilsen",
    ])
    assert [(d.slot, d.decision, d.receiver, d.referred_to, d.note) for d in found] == [
        (1, "start", None, None, None),
        (2, "start", "rikke@kommune.example", None, "haster"),
        (3, "no-basis", None, None, "borgeren er flyttet"),
        (4, "postponed", None, None, None),
        (5, "referred", None, "Jobcenter Nord", "ring først"),
        (6, "start", "bo@kommune.example", None, None),
    ]
    assert [(b.number, b.problem) for b in bad] == [
        (9, "decision_unknown"), (10, "referred_to_missing"), (11, "decision_trailing"),
        (12, "receiver_invalid"), (13, "decision_unknown")]
    assert found[1].number == 4 and found[1].text.startswith("2: Opstart")


def test_a_slot_written_twice_in_one_reply_counts_once_the_later_line():
    found, _ = read_decisions(["2: udsat", "2: opstart"])
    assert [(d.slot, d.decision, d.number) for d in found] == [(2, "start", 2)]


def test_an_unreadable_line_is_named_without_its_cpr_number():
    _, (bad,) = read_decisions(["3: 150200-4234 opstart?"])
    assert "4234" not in bad.text and bad.text.startswith("3: 150200-xxxx")


@given(st.sampled_from(sorted(SERIES)), st.dates(min_value=date(2020, 1, 1), max_value=date(2040, 12, 31)),
       st.sampled_from(["Dagsorden: x ", "Re: Dagsorden: x ", "SV: Re: "]))
def test_the_subject_reference_binds_a_plain_reply_to_its_session(series_id, day, prefix):
    assert find_reference(prefix + reference(series_id, day)) == (series_id, day)
    assert len(reference(series_id, day)) <= 40


words = st.sampled_from(["opstart", "intet grundlag", "udsat", "henvist Jobcenter", "no-basis", "postponed"])
notes = st.text(alphabet="abcæøå ", min_size=1, max_size=20).map(str.strip).filter(bool)


@given(st.integers(min_value=1, max_value=99), words, st.none() | notes)
def test_every_line_written_as_the_agenda_says_is_read(slot, word, note):
    line = f"{slot}: {word}" + (f" - {note}" if note else "")
    (found,), bad = read_decisions([line])
    assert bad == [] and found.slot == slot and found.note == note


# -- udsat --------------------------------------------------------------------

held_sessions = [s for s in SESSIONS if s.series_id == "unge"][:20]


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=15), st.lists(st.integers(min_value=-300, max_value=300),
                                                        max_size=6), st.integers(min_value=0, max_value=3))
def test_udsat_puts_the_item_in_the_next_session_of_its_series_ahead_of_every_newer_ordinary_item(
        index, offsets, acute_count):
    held = held_sessions[index]
    arrived = held.deadline - timedelta(days=2)
    item = Booked(1, held.key, False, arrived, "me", date(2003, 1, 1))
    following = next(s for s in SESSIONS if s.series_id == "unge" and s.planned and s.start > held.start)
    there = [Booked(10 + n, following.key, n < acute_count, arrived + timedelta(hours=o), f"c{n}", date(2004, 1, 1))
             for n, o in enumerate(offsets)]
    sessions = [s for s in SESSIONS if s.start > held.start]
    placement = postpone(item, held, sessions, SERIES, {following.key: there})
    if isinstance(placement, Refusal):
        assert False, "a later session always has room"
    if placement.session.key != following.key:  # only when nobody there arrived after it
        assert all(b.acute or b.received_at < arrived for b in there) and len(there) >= following.capacity
        return
    left = [b for b in there if placement.bumped is None or b.item_id != placement.bumped.item_id]
    assert len(left) + 1 <= following.capacity
    order = slot_order(left + [item])
    assert all(b.acute or b.received_at < arrived for b in order[:order.index(item)])
    if placement.bumped is not None:
        victim = next(b for b in there if b.item_id == placement.bumped.item_id)
        assert not victim.acute and victim.received_at == max(b.received_at for b in there if not b.acute)
        assert placement.bumped.to.start > following.start
