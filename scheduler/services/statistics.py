"""The forum's statistics: live rows counted, plus aggregates folded in before a purge.

The rows of items, decisions and cases become anonymous *facts* (series, session
date, age group, measure, waiting days) in one place, :func:`facts`, used both
by :func:`table` for the live rows and by :func:`fold` for rows about to be
deleted (retention, erasure), which stores them in ``stat_counts``. So a
period's numbers do not change when the personal data goes. The age group is
found by decrypting the CPR number here; no CPR number and no text leaves
this module.

Definitions (the README's "What the numbers mean"):

* A *citizen in a session*: the items of one citizen (CPR hash) in one session.
  ``brought``: one with an item still on the agenda (not withdrawn, not
  replaced: a replaced item and its replacement count once), plus the slots a
  decision postponed (``udsat``) out of that session (brought there, then moved
  on). ``acute``: brought, acute. ``withdrawn``: withdrawn and not brought.
  ``moved_capacity`` / ``late``: the intake placed the item after the first
  session it could reach, because that was full / its deadline had passed
  (the mail's reason ``moved_full`` / ``moved_late``).
* ``decision:<kind>``: the latest decision on each slot of the session.
* Waiting times are whole calendar days in the service's time zone: from the
  citizen's first mail (of the items brought) to the session; from the case's
  decision (``opstart``) to its first booked or held koordineringsmøde and
  fællessamtale, counted by the date of the session that decided it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from types import SimpleNamespace

from sqlalchemy import and_, or_, select, tuple_

from scheduler.cpr import parse_cpr
from scheduler.planning.statistics import (
    AGE_GROUPS,
    CHILD_GROUP,
    MEASURES,
    MEDIANS,
    Period,
    StatisticsTable,
    StatRow,
    age_group,
    measure_labels,
    median_shown,
)
from scheduler.store.tables import Case, CaseMeeting, Decision, Item, Mail, StatCount, StatFoldedSlot

BROUGHT = ("pending", "discussed")  # statuses of an item still on its session's agenda
UNKNOWN = "unknown"  # no CPR left to tell the age: in the total only
MEETINGS = {"coordination": "wait_decision_coordination", "joint": "wait_decision_joint"}


@dataclass(frozen=True)
class Fact:
    """One anonymous count: nothing in it points at a citizen."""

    series_id: str
    day: date
    group: str
    measure: str
    value: float | None = None


# -- the facts of rows -----------------------------------------------------------


def facts(repo, tz, items: Iterable, decisions: Iterable, cases: Iterable) -> list[Fact]:
    """The facts of live rows: ``items`` (with the mail's reason), all the
    decision rows of some slots, and cases (with their meetings)."""
    birth = _births(repo)
    return [*_item_facts(items, tz, birth), *_decision_facts(repo, decisions, tz, birth),
            *_case_facts(repo, cases, tz, birth)]


def _births(repo) -> Callable[[bytes, str, date], str]:
    def group(blob: bytes | None, context: str, on: date) -> str:
        if blob is None:
            return UNKNOWN
        return age_group(parse_cpr(repo.cipher.decrypt(blob, context=context), date.max).birth_date, on)
    return group


def _item_facts(rows, tz, group_of) -> Iterator[Fact]:
    citizens = defaultdict(list)
    for row in rows:
        citizens[(row.session_key, row.cpr_hash)].append(row)
    for mine in citizens.values():
        day = mine[0].session_start.astimezone(tz).date()
        made = _fact_maker(mine[0].series_id, day, group_of(mine[0].cpr_enc, "items.cpr", day))
        brought = [r for r in mine if r.status in BROUGHT]
        if brought:
            yield made("brought")
            if any(r.acute for r in brought):
                yield made("acute")
            first = min(r.received_at for r in mine if r.status in (*BROUGHT, "replaced"))
            yield made("wait_arrival_session", _days(first, mine[0].session_start, tz))
        elif any(r.status == "withdrawn" for r in mine):
            yield made("withdrawn")
        reasons = {r.reason_code for r in mine}
        if "moved_full" in reasons:
            yield made("moved_capacity")
        if "moved_late" in reasons:
            yield made("late")


def _decision_facts(repo, rows, tz, group_of) -> Iterator[Fact]:
    latest: dict[tuple[str, int], object] = {}
    for row in rows:
        key = (row.session_key, row.slot)
        if key not in latest or (row.decided_at, row.id) > (latest[key].decided_at, latest[key].id):
            latest[key] = row
    blobs = _cpr_blobs(repo, latest.values())
    for row in latest.values():
        day = row.session_start.astimezone(tz).date()
        blob, context = blobs.get(("item", row.item_id)) or blobs.get(("case", row.case_id)) or (None, "")
        made = _fact_maker(row.series_id, day, group_of(blob, context, day))
        yield made(f"decision:{row.decision}")
        if row.decision == "postponed":  # brought here, then moved on
            yield made("brought")


def _cpr_blobs(repo, decisions) -> dict[tuple[str, object], tuple[bytes, str]]:
    """The encrypted CPR of each decision's item, or else its case's."""
    item_ids = {d.item_id for d in decisions if d.item_id is not None}
    case_ids = {d.case_id for d in decisions if d.case_id is not None}
    found = {("item", i): (b, "items.cpr")
             for i, b in repo.db.execute(select(Item.id, Item.cpr_enc).where(Item.id.in_(item_ids)))}
    found.update({("case", c): (b, "cases.cpr")
                  for c, b in repo.db.execute(select(Case.id, Case.cpr_enc).where(Case.id.in_(case_ids)))})
    return found


def _case_facts(repo, cases, tz, group_of) -> Iterator[Fact]:
    cases = list(cases)
    meetings = defaultdict(list)
    rows = repo.db.scalars(select(CaseMeeting).where(CaseMeeting.case_id.in_([c.id for c in cases]),
                                                     CaseMeeting.status.in_(("booked", "held")),
                                                     CaseMeeting.start.is_not(None)))
    for meeting in rows:
        meetings[(meeting.case_id, meeting.kind)].append(meeting.start)
    for case in cases:
        day = case.session_start.astimezone(tz).date()
        made = _fact_maker(case.series_id, day, group_of(case.cpr_enc, "cases.cpr", day))
        for kind, measure in MEETINGS.items():
            if starts := meetings.get((case.id, kind)):
                yield made(measure, _days(case.opened_at, min(starts), tz))


def _fact_maker(series_id: str, day: date, group: str) -> Callable[..., Fact]:
    return lambda measure, value=None: Fact(series_id, day, group, measure, value)


def _days(first: datetime, then: datetime, tz) -> float:
    """Whole calendar days between two moments, in the service's zone."""
    return float((then.astimezone(tz).date() - first.astimezone(tz).date()).days)


# -- selecting rows ----------------------------------------------------------------

_ITEM_COLUMNS = (Item.id, Item.series_id, Item.session_key, Item.session_start, Item.acute, Item.status,
                 Item.cpr_hash, Item.cpr_enc, Item.received_at, Mail.reason_code)


def _items(repo, where) -> list:
    return repo.db.execute(select(*_ITEM_COLUMNS).outerjoin(Mail, Mail.id == Item.mail_id).where(where)).all()


def _decisions_of_slots(repo, slot_filter) -> list:
    """All decision rows of the slots ``slot_filter`` picks, less the slots already folded."""
    slots = select(Decision.session_key, Decision.slot).where(slot_filter)
    folded = select(StatFoldedSlot.session_key, StatFoldedSlot.slot)
    return repo.db.scalars(select(Decision).where(
        tuple_(Decision.session_key, Decision.slot).in_(slots),
        tuple_(Decision.session_key, Decision.slot).not_in(folded))).all()


def _live(repo, first: datetime, after: datetime, series_id: str | None) -> tuple[list, list, list]:
    def within(column, series):
        return and_(column >= first, column < after, *([series == series_id] if series_id else []))
    items = _items(repo, within(Item.session_start, Item.series_id))
    decisions = _decisions_of_slots(repo, within(Decision.session_start, Decision.series_id))
    cases = repo.db.scalars(select(Case).where(within(Case.session_start, Case.series_id))).all()
    return items, decisions, cases


# -- the table, the fold ---------------------------------------------------------------


def table(app, period: Period, series_id: str | None = None) -> StatisticsTable:
    """The period's statistics (all series, or one), live rows and folded aggregates."""
    tz = app.tz
    # Sessions by their local date: a day's margin in UTC, then the exact date.
    first = datetime.combine(period.first - timedelta(days=1), time(), tz)
    after = datetime.combine(period.last + timedelta(days=2), time(), tz)
    with app.transaction() as repo:
        found = [f for f in facts(repo, tz, *_live(repo, first, after, series_id)) if f.day in period]
        folded = repo.db.execute(select(StatCount).where(
            StatCount.session_date >= period.first, StatCount.session_date <= period.last,
            *([StatCount.series_id == series_id] if series_id else []))).scalars().all()
        stored = [(Fact(s.series_id, s.session_date, s.age_group, s.measure, s.value), s.count) for s in folded]
    return StatisticsTable(period, _rows([(f, 1) for f in found] + stored))


def _rows(weighted: list[tuple[Fact, int]]) -> list[StatRow]:
    counts: Counter = Counter()
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for fact, n in weighted:
        if fact.measure in MEDIANS:
            values[(fact.measure, fact.group)].extend([fact.value] * n)
        else:
            counts[(fact.measure, fact.group)] += n
    groups = (CHILD_GROUP, *AGE_GROUPS)
    rows = []
    for measure in MEASURES:
        if measure in MEDIANS:
            by_group = {g: median_shown(values[(measure, g)]) for g in groups}
            total = median_shown(v for (m, _), vs in values.items() if m == measure for v in vs)
        else:
            by_group = {g: counts[(measure, g)] for g in groups}
            total = sum(n for (m, _), n in counts.items() if m == measure)
        rows.append(StatRow(measure, by_group, total))
    return rows


def fold(repo, tz, *, now: datetime | None = None, subject: str | None = None) -> int:
    """Store the facts of the rows about to be deleted: those past their
    retention at ``now`` (the purge), or the citizen ``subject``'s (erasure;
    an item of a session after ``now`` never reaches its agenda: it counts
    as withdrawn). Call it in the deleting transaction, before the deletes.
    Returns the facts."""
    if subject is not None:
        cases = repo.db.scalars(select(Case).where(Case.cpr_hash == subject)).all()
        items = [_withdrawn(row) if now is not None and row.session_start > now and row.status in BROUGHT else row
                 for row in _items(repo, Item.cpr_hash == subject)]
        doomed = or_(Decision.cpr_hash == subject, Decision.case_id.in_([c.id for c in cases]))
    else:
        cases = repo.db.scalars(select(Case).where(Case.purge_after < now)).all()
        items = _items(repo, Item.purge_after < now)
        doomed = or_(and_(Decision.purge_after < now, Decision.case_id.is_(None)),
                     Decision.case_id.in_([c.id for c in cases]))
    decisions = _decisions_of_slots(repo, doomed)
    found = facts(repo, tz, items, decisions, cases)
    for (series_id, day, group, measure, value), n in Counter(
            (f.series_id, f.day, f.group, f.measure, f.value) for f in found).items():
        repo.db.add(StatCount(series_id=series_id, session_date=day, age_group=group, measure=measure,
                              value=value, count=n))
    for key in {(d.session_key, d.slot) for d in decisions}:
        repo.db.add(StatFoldedSlot(session_key=key[0], slot=key[1]))
    repo.db.flush()
    return len(found)


def _withdrawn(row):
    """An item row as if withdrawn (``_item_facts`` reads its columns by name)."""
    return SimpleNamespace(**{**row._mapping, "status": "withdrawn"})


def labels(language: str) -> dict[str, str]:
    """The measures' labels (and the header's) in Danish or English."""
    return measure_labels(language)
