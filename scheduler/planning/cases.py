"""A case's life after the forum decided ``opstart``: one state machine.

The rule book (seed 003) goes decision → koordineringsmøde → enighed →
fællessamtale → opfølgning; the Stafet model (seed 002) adds that a case
has exactly one holder, who can pass it on only once the next one has
accepted it. Both live here as values and one transition function
(``advance``), so that no service can put a case into a state the rules
do not know. Pure: no I/O, no clock; a time, where needed, is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum


class Stage(str, Enum):
    DECIDED = "decided"  # opstart decided, no coordination meeting yet
    COORDINATION_BOOKED = "coordination_booked"
    AGREED = "agreed"  # Enighed: the caseworkers agree on the joint plan
    JOINT_BOOKED = "joint_booked"  # the fællessamtale with the citizen is booked
    FOLLOWING_UP = "following_up"
    CLOSED = "closed"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)


_ORDER = list(Stage)


class CaseError(ValueError):
    """An event the case's state does not allow; the message says why."""


@dataclass(frozen=True)
class CaseState:
    """Where a case is, and who holds it.

    ``holder`` is one address, always; ``offered_to`` is the one a pending
    hand-over waits on (the holder keeps the case until that one accepts).
    """

    stage: Stage
    holder: str
    offered_to: str | None = None

    @property
    def open(self) -> bool:
        return self.stage is not Stage.CLOSED


# -- events -----------------------------------------------------------------


@dataclass(frozen=True)
class CoordinationBooked:
    """A koordineringsmøde was booked (or booked again)."""


@dataclass(frozen=True)
class Agreed:
    """``Enighed``: the caseworkers agree on the joint plan."""

    by: str


@dataclass(frozen=True)
class JointBooked:
    """The fællessamtale was booked (or booked again)."""


@dataclass(frozen=True)
class FollowUpBooked:
    """A follow-up meeting of the plan was booked."""


@dataclass(frozen=True)
class LastFollowUpHeld:
    """The last booked follow-up was held: the case ends."""


@dataclass(frozen=True)
class Closed:
    """Closed by hand (``sparring case close``)."""

    by: str


@dataclass(frozen=True)
class HandOverOffered:
    """The holder offers the case to ``to``; the holder keeps it meanwhile."""

    by: str
    to: str


@dataclass(frozen=True)
class HandOverAccepted:
    """The one offered the case takes it: now the only holder."""

    by: str


@dataclass(frozen=True)
class HandOverWithdrawn:
    """The offer ends without a change of holder (declined or withdrawn)."""

    by: str


Event = (CoordinationBooked | Agreed | JointBooked | FollowUpBooked | LastFollowUpHeld | Closed
         | HandOverOffered | HandOverAccepted | HandOverWithdrawn)

# Stage events: from which stages each is allowed, and where it leads.
_STEPS: dict[type, tuple[frozenset[Stage], Stage | None]] = {
    CoordinationBooked: (frozenset({Stage.DECIDED, Stage.COORDINATION_BOOKED}), Stage.COORDINATION_BOOKED),
    Agreed: (frozenset({Stage.DECIDED, Stage.COORDINATION_BOOKED}), Stage.AGREED),
    JointBooked: (frozenset({Stage.AGREED, Stage.JOINT_BOOKED}), Stage.JOINT_BOOKED),
    FollowUpBooked: (frozenset({Stage.AGREED, Stage.JOINT_BOOKED, Stage.FOLLOWING_UP}), Stage.FOLLOWING_UP),
    LastFollowUpHeld: (frozenset({Stage.FOLLOWING_UP}), Stage.CLOSED),
    Closed: (frozenset(set(Stage) - {Stage.CLOSED}), Stage.CLOSED),
}


def opened(holder: str) -> CaseState:
    """A case the forum just decided to start, held by ``holder``."""
    if not holder.strip():
        raise CaseError("a case needs a holder")
    return CaseState(Stage.DECIDED, holder.strip().lower())


def advance(state: CaseState, event: Event) -> CaseState:
    """The state after ``event``, or CaseError if the rules do not allow it."""
    if not state.open:
        raise CaseError(f"the case is closed: {type(event).__name__} not allowed")
    if isinstance(event, (HandOverOffered, HandOverAccepted, HandOverWithdrawn)):
        return _hand_over(state, event)
    allowed, to = _STEPS[type(event)]
    if state.stage not in allowed:
        raise CaseError(f"{type(event).__name__} not allowed in stage {state.stage.value}")
    if to is Stage.CLOSED:
        return CaseState(Stage.CLOSED, state.holder)  # an offer ends with the case
    return replace(state, stage=to)


def _hand_over(state: CaseState, event: Event) -> CaseState:
    by = event.by.strip().lower()
    if isinstance(event, HandOverOffered):
        to = event.to.strip().lower()
        if by != state.holder:
            raise CaseError("only the holder can offer the case to another")
        if not to or to == state.holder:
            raise CaseError("a case is offered to someone other than its holder")
        return replace(state, offered_to=to)
    if state.offered_to is None:
        raise CaseError("no hand-over is pending")
    if isinstance(event, HandOverAccepted):
        if by != state.offered_to:
            raise CaseError("only the one offered the case can accept it")
        return replace(state, holder=by, offered_to=None)
    if by not in (state.holder, state.offered_to):
        raise CaseError("only the holder or the one offered can end a hand-over")
    return replace(state, offered_to=None)


def waiting_on(state: CaseState) -> str | None:
    """Whose move it is: the one offered the case, else the holder; none when closed."""
    if not state.open:
        return None
    return state.offered_to or state.holder


# -- case ids ---------------------------------------------------------------

# Crockford's base 32 without the look-alikes; six of them give 2^30 ids,
# and never ten digits in a row (a CPR filter would stop them).
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_LENGTH = 6


def case_id(token: bytes) -> str:
    """A short case id, e.g. ``K-7F3QXA``, from random bytes (at least 4).

    It carries no personal data: it is drawn at random, not derived.
    """
    if len(token) < 4:
        raise ValueError("a case id needs at least 4 random bytes")
    number = int.from_bytes(token[:4], "big")
    chars = [_ALPHABET[(number >> (5 * n)) & 31] for n in range(ID_LENGTH)]
    return "K-" + "".join(chars)
