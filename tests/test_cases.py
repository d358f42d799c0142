"""The case model (issue 15): one holder, a Stafet hand-over, stages that only go forward."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.planning import cases as c

PEOPLE = ("a@k.example", "b@k.example", "c@k.example")
people = st.sampled_from(PEOPLE)
events = st.one_of(
    st.just(c.CoordinationBooked()), people.map(c.Agreed), st.just(c.JointBooked()),
    st.just(c.FollowUpBooked()), st.just(c.LastFollowUpHeld()), people.map(c.Closed),
    st.builds(c.HandOverOffered, people, people), people.map(c.HandOverAccepted),
    people.map(c.HandOverWithdrawn),
)


def run(events_):
    """Each event applied where allowed; (states, rejected events)."""
    state, states, refused = c.opened(PEOPLE[0]), [], []
    states.append(state)
    for event in events_:
        try:
            state = c.advance(state, event)
        except c.CaseError:
            refused.append((state, event))
        states.append(state)
    return states, refused


@settings(max_examples=400, deadline=None)
@given(st.lists(events, max_size=40))
def test_a_case_always_has_exactly_one_holder(sequence):
    states, _ = run(sequence)
    for s in states:
        assert isinstance(s.holder, str) and s.holder in PEOPLE
        assert s.offered_to != s.holder
        assert s.open or s.offered_to is None, "an offer ends with the case"
        assert c.waiting_on(s) in (None, s.holder, s.offered_to)


@settings(max_examples=400, deadline=None)
@given(st.lists(events, max_size=40))
def test_the_holder_changes_only_when_the_one_offered_accepts(sequence):
    states, _ = run(sequence)
    for (before, after), event in zip(zip(states, states[1:]), sequence):
        if after.holder != before.holder:
            assert isinstance(event, c.HandOverAccepted)
            assert before.offered_to == after.holder == event.by
        if before.offered_to is None and after.offered_to is not None:
            assert isinstance(event, c.HandOverOffered) and event.by == before.holder


@settings(max_examples=400, deadline=None)
@given(st.lists(events, max_size=40))
def test_stages_only_go_forward_and_closed_is_final(sequence):
    states, refused = run(sequence)
    for before, after in zip(states, states[1:]):
        assert after.stage.rank >= before.stage.rank
        if not before.open:
            assert after == before
    for state, _ in refused:
        assert state in states  # a refused event changed nothing


def test_the_rule_book_path_from_decision_to_closing():
    s = c.opened("Rikke@K.example")
    assert (s.stage, s.holder) == (c.Stage.DECIDED, "rikke@k.example")
    for event, stage in [(c.CoordinationBooked(), c.Stage.COORDINATION_BOOKED),
                         (c.Agreed("karen@k.example"), c.Stage.AGREED),
                         (c.JointBooked(), c.Stage.JOINT_BOOKED),
                         (c.FollowUpBooked(), c.Stage.FOLLOWING_UP),
                         (c.FollowUpBooked(), c.Stage.FOLLOWING_UP),
                         (c.LastFollowUpHeld(), c.Stage.CLOSED)]:
        s = c.advance(s, event)
        assert s.stage is stage
    with pytest.raises(c.CaseError, match="closed"):
        c.advance(s, c.CoordinationBooked())


def test_no_joint_conversation_before_agreement():
    s = c.advance(c.opened("r@k.example"), c.CoordinationBooked())
    with pytest.raises(c.CaseError, match="JointBooked not allowed in stage coordination_booked"):
        c.advance(s, c.JointBooked())


def test_a_stafet_hand_over_waits_for_the_next_holder():
    s = c.opened("r@k.example")
    offered = c.advance(s, c.HandOverOffered("r@k.example", "n@k.example"))
    assert (offered.holder, offered.offered_to, c.waiting_on(offered)) == ("r@k.example", "n@k.example",
                                                                          "n@k.example")
    with pytest.raises(c.CaseError, match="only the one offered"):
        c.advance(offered, c.HandOverAccepted("x@k.example"))
    taken = c.advance(offered, c.HandOverAccepted("n@k.example"))
    assert (taken.holder, taken.offered_to) == ("n@k.example", None)
    declined = c.advance(offered, c.HandOverWithdrawn("n@k.example"))
    assert (declined.holder, declined.offered_to) == ("r@k.example", None)
    with pytest.raises(c.CaseError, match="only the holder"):
        c.advance(s, c.HandOverOffered("n@k.example", "x@k.example"))


@given(st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4))
def test_case_ids_are_short_and_drawn_not_derived(token, other):
    ident = c.case_id(token)
    assert len(ident) <= 12 and re.fullmatch(r"K-[0-9A-HJKMNP-TV-Z]{6}", ident)  # too short for a CPR number
    if token[0] & 0xC0 == other[0] & 0xC0:  # the 30 bits used: distinct tokens, distinct ids
        assert (ident == c.case_id(other)) == (token == other)
