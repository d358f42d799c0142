"""Where an agenda item goes: routing by age, deadlines, slots, acute items.

Pure: the sessions, what is already booked, and the arrival time are all
arguments. The rules (seed 003 and issue 3):

* An item goes to the first upcoming session, of any series, whose age range
  holds the citizen's age on that session's date, whose deadline had not
  passed when the *mailbox* received the mail, and that has a free slot.
* An acute item ignores the deadline and takes the first slot of the next
  session for its age; when that session is full, the latest-arrived
  ordinary item there is bumped to the following session with room.
* A new item for a citizen who already has one pending in the session it
  reaches replaces that one and keeps its place.
* Slots are given in order: acute items first, then by arrival.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from scheduler.model import Series, Session


@dataclass(frozen=True)
class Booked:
    """An item already placed in a session (pending).

    ``birth_date`` may be a callable returning the date: the store decrypts
    it only when a bump needs the victim's age.
    """

    item_id: int
    session_key: str
    acute: bool
    received_at: datetime
    cpr_hash: str
    birth_date: date | Callable[[], date]

    def birth(self) -> date:
        return self.birth_date() if callable(self.birth_date) else self.birth_date


class Occupancy(dict[str, list[Booked]]):
    """Pending items per session key, and the sessions each citizen holds one in.

    What the store hands ``allocate``: complete for the sessions allocation
    is given (a session without an entry is empty). The citizen index lets a
    walk skip full sessions without looking inside them, which matters when
    sessions are full for months ahead. A dict, so that lookups stay at C
    speed; change it only through ``add``, ``remove`` and ``load``.
    """

    def __init__(self, items: Iterable[Booked] = ()) -> None:
        super().__init__()
        self._citizens: dict[str, set[str]] = {}
        self._version = 0  # rises with every change: it keys ``with_room``'s memo
        self._with_room: tuple[tuple, list[Session]] = ((), [])
        for booked in items:
            self.add(booked)

    @classmethod
    def of(cls, booked: Mapping[str, Sequence[Booked]]) -> Occupancy:
        if isinstance(booked, Occupancy):
            return booked
        return cls(b for items in booked.values() for b in items)

    def add(self, booked: Booked) -> None:
        self._version += 1
        self.setdefault(booked.session_key, []).append(booked)
        self._citizens.setdefault(booked.cpr_hash, set()).add(booked.session_key)

    def remove(self, item_id: int, session_key: str) -> Booked | None:
        """Take an item out of its session; None if it is not held here."""
        items = self.get(session_key, [])
        for index, booked in enumerate(items):
            if booked.item_id == item_id:
                self._version += 1
                del items[index]
                if all(other.cpr_hash != booked.cpr_hash for other in items):
                    self._citizens[booked.cpr_hash].discard(session_key)
                return booked
        return None

    def load(self, session_key: str, items: Iterable[Booked]) -> None:
        """A session's items as the store read them (the session had no entry)."""
        self._version += 1
        self[session_key] = []
        for booked in items:
            self.add(booked)

    def holding(self, cpr_hash: str) -> set[str]:
        """Keys of the sessions where this citizen has a pending item."""
        return self._citizens.get(cpr_hash, set())

    def with_room(self, sessions: Sequence[Session]) -> list[Session]:
        """The sessions with a free slot; remembered until something changes,
        as the mails of a batch mostly look at the same stretch of sessions
        (a contiguous slice of the plan, named by its ends). Do not mutate."""
        mark = (self._version, len(sessions), sessions[0].key, sessions[-1].key) if sessions else ()
        if mark != self._with_room[0]:
            get = self.get
            self._with_room = mark, [s for s in sessions if len(get(s.key, ())) < s.capacity]
        return self._with_room[1]


@dataclass(frozen=True)
class Request:
    """A valid item waiting for a place."""

    cpr_hash: str
    birth_date: date
    received_at: datetime
    acute: bool = False


@dataclass(frozen=True)
class Bump:
    """An ordinary item moved on to make room for an acute one."""

    item_id: int
    from_key: str
    to: Session


@dataclass(frozen=True)
class Placement:
    session: Session
    first_reachable: Session
    replaces: int | None = None
    bumped: Bump | None = None
    # ``udsat`` only: the citizen's newer item already on that agenda, which
    # this item gives way to (its text is the caseworker's latest word).
    replaced_by: int | None = None

    @property
    def moved(self) -> bool:
        """Placed later than the first session the mail could have reached."""
        return self.session.key != self.first_reachable.key

    def why_moved(self, received_at: datetime) -> str | None:
        """'late' (after the first session's deadline), 'full', or None."""
        if not self.moved:
            return None
        return "late" if received_at > self.first_reachable.deadline else "full"


@dataclass(frozen=True)
class Refusal:
    code: str  # under_age | no_session


def age_on(birth: date, day: date) -> int:
    """Whole years; a 29 February birthday counts from 1 March in common years."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def slot_order(items: Iterable[Booked]) -> list[Booked]:
    """The order slots are given in: acute first, then by arrival."""
    return sorted(items, key=lambda b: (not b.acute, b.received_at, b.item_id))


def serving(sessions: Iterable[Session], series: Mapping[str, Series], birth: date, after: datetime):
    """Planned sessions after ``after`` whose series serves the age on the day."""
    spans = {sid: _age_span(birth, s) for sid, s in series.items()}
    for session in sessions:
        if session.planned and session.start > after:
            first, last = spans[session.series_id]
            if first <= session.start.date() <= last:
                yield session


def _age_span(birth: date, series: Series) -> tuple[date, date]:
    """The days on which a citizen born on ``birth`` has an age the series serves."""
    first = _birthday(birth, series.min_age)
    last = date.max if series.max_age is None else _birthday(birth, series.max_age + 1) - timedelta(days=1)
    return first, last


def _birthday(birth: date, years: int) -> date:
    """The day one turns ``years``: 29 February counts from 1 March in common years."""
    try:
        return birth.replace(year=birth.year + years)
    except ValueError:
        return date(birth.year + years, 3, 1)
    except OverflowError:
        return date.max


def allocate(
    request: Request,
    sessions: Sequence[Session],
    series: Mapping[str, Series],
    booked: Mapping[str, Sequence[Booked]],
) -> Placement | Refusal:
    """Decide the session for ``request``. ``sessions`` holds every series'
    sessions from ``received_at`` over the planning horizon, sorted by start."""
    youngest = min(s.min_age for s in series.values())
    if age_on(request.birth_date, request.received_at.date()) < youngest:
        return Refusal("under_age")
    first = next(serving(sessions, series, request.birth_date, request.received_at), None)
    if first is None:
        return Refusal("no_session")
    occupancy = Occupancy.of(booked)
    if not request.acute:  # an acute item may bump, so it must see full sessions
        sessions = _open_to(request.cpr_hash, sessions, occupancy)
    return _place(request, sessions, series, occupancy, first)


def _open_to(cpr_hash: str, sessions: Sequence[Session], occupancy: Occupancy) -> list[Session]:
    """The sessions an ordinary item could take: with room, or holding the
    citizen's item (which it would replace). One cheap pass, so the walk in
    ``_place`` never looks inside a full session."""
    mine = occupancy.holding(cpr_hash)
    if not mine:
        return occupancy.with_room(sessions)
    get = occupancy.get
    return [s for s in sessions if len(get(s.key, ())) < s.capacity or s.key in mine]


def _place(request, sessions, series, booked, first) -> Placement | Refusal:
    """Ordinary items respect the deadline and take a free slot; an acute one
    ignores the deadline and, in a full session, bumps the latest ordinary."""
    for session in serving(sessions, series, request.birth_date, request.received_at):
        if not request.acute and request.received_at > session.deadline:
            continue
        here = booked.get(session.key, ())
        same = _same_citizen(here, request.cpr_hash)
        if same is not None:
            return Placement(session, first, replaces=same.item_id)
        if len(here) < session.capacity:
            return Placement(session, first)
        if not request.acute:
            continue
        ordinary = [b for b in here if not b.acute]
        if ordinary:
            return _bump_latest(ordinary, session, first, sessions, series, booked)
    return Refusal("no_session")


def _bump_latest(candidates, session, first, sessions, series, booked) -> Placement | Refusal:
    """Make room in the full ``session``: its latest-arrived of ``candidates`` moves on."""
    victim = slot_order(candidates)[-1]
    target = _room_after(victim, session, sessions, series, booked)
    if target is None:
        return Refusal("no_session")
    return Placement(session, first, bumped=Bump(victim.item_id, session.key, target))


def _room_after(victim: Booked, full: Session, sessions, series, booked) -> Session | None:
    """The first session after ``full`` for the victim's own age with a free slot,
    skipping one where the victim's citizen already has an item."""
    for session in serving(sessions, series, victim.birth(), full.start):
        here = booked.get(session.key, ())
        if len(here) < session.capacity and _same_citizen(here, victim.cpr_hash) is None:
            return session
    return None


def _same_citizen(here: Sequence[Booked], cpr_hash: str) -> Booked | None:
    for booked in here:  # a loop, not next(genexpr): this runs for every full session walked
        if booked.cpr_hash == cpr_hash:
            return booked
    return None


def postpone(item: Booked, held: Session, sessions: Sequence[Session], series: Mapping[str, Series],
             booked: Mapping[str, Sequence[Booked]]) -> Placement | Refusal:
    """``udsat``: the item goes to the next planned session of ``held``'s
    series, keeping its arrival time, so it comes before every item that
    arrived after it (acute items stay first). Should that session then be
    full, the latest-arrived ordinary item there moves on, as for an acute
    item. A citizen already on that agenda keeps one item: the newer one,
    as a newer mail replaces an older one at intake; this item gives way
    (``replaced_by``). ``sessions`` starts after ``held``."""
    occupancy = Occupancy.of(booked)
    for session in sessions:
        if session.series_id != held.series_id or not session.planned or session.start <= held.start:
            continue
        here = [b for b in occupancy.get(session.key, ()) if b.item_id != item.item_id]
        same = _same_citizen(here, item.cpr_hash)
        if same is not None:
            return Placement(session, session, replaced_by=same.item_id)
        if len(here) < session.capacity:
            return Placement(session, session)
        newer = [b for b in here if not b.acute and slot_order([b, item])[0] is item]
        if newer:
            return _bump_latest(newer, session, session, sessions, series, occupancy)
        # nobody there it may go ahead of: the next session
    return Refusal("no_session")
