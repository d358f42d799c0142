"""The statistics of a period counted here, straight from the database rows.

Written apart from ``scheduler.services.statistics`` on purpose (the page
uses that; a test that called it could not fail): the rows are read with
SQLAlchemy through the project's store and demo key, and counted by the
definitions in the README ("What the numbers mean"). Returns the cells as
shown: ``{(measure, group): text}`` with counts 1..4 as "<5", the smallest
other counts of a row as ".." while a reader could still work out a "<5"
from the total (found here by trying every reading), and medians over fewer
than five values blank.
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import select

from scheduler.clock import FixedClock
from scheduler.config import load_config
from scheduler.cpr import parse_cpr
from scheduler.store.tables import Case, CaseMeeting, Decision, Item, Mail
from scheduler.wiring import make_app
from tests.daemonkit import CONFIG

KINDS = ("start", "no-basis", "postponed", "referred")
COUNTED = ("brought", "acute", "moved_capacity", "late", "withdrawn", *(f"decision:{k}" for k in KINDS))
WAITS = ("wait_arrival_session", "wait_decision_coordination", "wait_decision_joint")


def group_of(birth: date, on: date) -> str:
    age = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return "0-14" if age < 15 else "15-17" if age < 18 else "18-29" if age < 30 else "30+"


class Tally:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = defaultdict(int)
        self.waits: dict[tuple[str, str], list[float]] = defaultdict(list)

    def add(self, measure: str, group: str, wait: float | None = None) -> None:
        if wait is None:
            self.counts[(measure, group)] += 1
            self.counts[(measure, "total")] += 1
        else:
            self.waits[(measure, group)].append(wait)
            self.waits[(measure, "total")].append(wait)

    def shown(self, groups: tuple[str, ...]) -> dict[tuple[str, str], str]:
        cells = {}
        for measure in COUNTED:
            row = {group: self.counts[(measure, group)] for group in groups}
            texts, total = suppressed(row, self.counts[(measure, "total")])
            cells.update({(measure, group): text for group, text in texts.items()})
            cells[(measure, "total")] = total
        for group in (*groups, "total"):
            for measure in WAITS:
                values = self.waits[(measure, group)]
                cells[(measure, group)] = f"{statistics.median(values):.1f}" if len(values) >= 5 else ""
        return cells


def suppressed(row: dict[str, int], total: int) -> tuple[dict[str, str], str]:
    """A row's cells and total as shown: 1..4 as "<5"; then the smallest other
    counts hidden as "..", and at last the total, until no "<5" is pinned."""
    texts = {g: "0" if n == 0 else "<5" if n < 5 else str(n) for g, n in row.items()}
    larger = sorted((n, g) for g, n in row.items() if n >= 5)
    while pinned(texts, total):
        if not larger:
            return texts, ".."
        texts[larger.pop(0)[1]] = ".."
    return texts, "0" if total == 0 else "<5" if total < 5 else str(total)


def pinned(texts: dict[str, str], total: int) -> bool:
    """Whether a reader who sees ``texts`` and the total can tell one "<5" exactly:
    every reading (a "<5" is 1..4, a ".." 5 or more) that adds up to the total
    (to 1..4 when the total itself shows "<5") tried."""
    unknown = [g for g, t in texts.items() if t in ("<5", "..")]
    known = sum(int(t) for t in texts.values() if t not in ("<5", ".."))
    sums = {total - known} if total >= 5 else set(range(1 - known, 5 - known))
    ranges = [range(1, 5) if texts[g] == "<5" else range(5, max(sums) + 1) for g in unknown]
    seen = defaultdict(set)
    for reading in itertools.product(*ranges):
        if sum(reading) in sums:
            for g, n in zip(unknown, reading):
                seen[g].add(n)
    return any(len(seen[g]) == 1 for g in unknown if texts[g] == "<5")


def open_app(data_dir: Path):
    """The project's store on ``data_dir`` with its demo key."""
    config = load_config(CONFIG)
    return make_app(config, FixedClock(datetime(2027, 4, 1, tzinfo=config.tz)), data_dir, demo=True,
                    announce=lambda _: None)


def open_cases(data_dir: Path) -> list[tuple[str, str]]:
    """(case id, the caseworker who brought it) of every case."""
    app = open_app(data_dir)
    with app.transaction() as repo:
        found = [(case.id, case.referrer) for case in repo.db.scalars(select(Case).order_by(Case.id))]
    app.engine.dispose()
    return found


def counted(data_dir: Path, first: date, last: date) -> Tally:
    app = open_app(data_dir)
    tz, tally = app.tz, Tally()

    def local(moment: datetime) -> date:
        return moment.astimezone(tz).date()

    def group(blob: bytes, context: str, on: date) -> str:
        return group_of(parse_cpr(app.cipher.decrypt(blob, context=context), date.max).birth_date, on)

    with app.transaction() as repo:
        rows = repo.db.execute(select(Item, Mail.reason_code).join(Mail, Mail.id == Item.mail_id)).all()
        decisions = repo.db.scalars(select(Decision)).all()
        cases = repo.db.scalars(select(Case)).all()
        meetings = repo.db.scalars(select(CaseMeeting)).all()
        items = {item.id: item for item, _ in rows}
        # Items: one citizen in one session counts once.
        citizens = defaultdict(list)
        for item, reason in rows:
            if first <= local(item.session_start) <= last:
                citizens[(item.session_key, item.cpr_hash)].append((item, reason))
        for mine in citizens.values():
            day = local(mine[0][0].session_start)
            who = group(mine[0][0].cpr_enc, "items.cpr", day)
            on_agenda = [i for i, _ in mine if i.status in ("pending", "discussed")]
            if on_agenda:
                tally.add("brought", who)
                if any(i.acute for i in on_agenda):
                    tally.add("acute", who)
                arrived = min(i.received_at for i, _ in mine if i.status in ("pending", "discussed", "replaced"))
                tally.add("wait_arrival_session", who, float((day - local(arrived)).days))
            elif any(i.status == "withdrawn" for i, _ in mine):
                tally.add("withdrawn", who)
            reasons = {r for _, r in mine}
            if "moved_full" in reasons:
                tally.add("moved_capacity", who)
            if "moved_late" in reasons:
                tally.add("late", who)
        # Decisions: the latest on each slot; a postponed slot was brought to that session too.
        latest = {}
        for d in sorted(decisions, key=lambda d: (d.decided_at, d.id)):
            latest[(d.session_key, d.slot)] = d
        by_case = {c.id: c for c in cases}
        for d in latest.values():
            day = local(d.session_start)
            if not first <= day <= last:
                continue
            if d.item_id in items:
                who = group(items[d.item_id].cpr_enc, "items.cpr", day)
            else:
                who = group(by_case[d.case_id].cpr_enc, "cases.cpr", day)
            tally.add(f"decision:{d.decision}", who)
            if d.decision == "postponed":
                tally.add("brought", who)
        # Waits from the decision (the case opened) to its first koordineringsmøde and fællessamtale.
        for case in cases:
            day = local(case.session_start)
            if not first <= day <= last:
                continue
            who = group(case.cpr_enc, "cases.cpr", day)
            for kind, measure in (("coordination", "wait_decision_coordination"), ("joint", "wait_decision_joint")):
                starts = [m.start for m in meetings if m.case_id == case.id and m.kind == kind
                          and m.status in ("booked", "held") and m.start is not None]
                if starts:
                    tally.add(measure, who, float((local(min(starts)) - local(case.opened_at)).days))
    app.engine.dispose()
    return tally
