"""What the overview page shows (issue 16): counts and times, never personal data.

Per series its coming sessions with their fill level, the next deadline, the
queue (``backlog.queue_depth``) and the open cases by stage; and the
service's health as ``sparring status`` sees it (``status.service_facts``).
Items are counted in SQL, so nothing is decrypted here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, cast, func, select

from scheduler.model import Series
from scheduler.planning.cases import Stage
from scheduler.services import backlog
from scheduler.services.status import ServiceFacts, service_facts
from scheduler.store.repository import PENDING
from scheduler.store.tables import Item

COMING = 6  # sessions shown per series
# Open cases by who they wait on, in the order of a case's life.
WAITING = (Stage.DECIDED, Stage.COORDINATION_BOOKED, Stage.AGREED, Stage.JOINT_BOOKED, Stage.FOLLOWING_UP)


@dataclass(frozen=True)
class SessionFill:
    key: str
    start: datetime
    deadline: datetime
    capacity: int
    taken: int
    acute: int
    cancelled: bool
    closed: bool  # its deadline has passed: no new items
    note: str | None

    @property
    def full(self) -> bool:
        return self.taken >= self.capacity


@dataclass(frozen=True)
class SeriesOverview:
    series: Series
    sessions: list[SessionFill]
    next_deadline: SessionFill | None
    queue_depth: int
    cases: dict[Stage, int]  # open cases by stage (every stage of WAITING, 0 included)
    offered: int  # open cases whose hand-over waits on the next holder's acceptance


@dataclass(frozen=True)
class Overview:
    now: datetime
    series: list[SeriesOverview]
    health: ServiceFacts


def overview(app) -> Overview:
    app.reload_sessions()  # ``serve`` is not the daemon: an extra session it added since is in the database only
    now = app.now()
    by_series: dict[str, list] = {sid: [] for sid in app.series}
    for session in app.sessions_from(now):
        if len(by_series[session.series_id]) < COMING:
            by_series[session.series_id].append(session)
        if all(len(s) == COMING for s in by_series.values()):
            break
    keys = [s.key for sessions in by_series.values() for s in sessions]
    with app.transaction() as repo:
        counts = {key: (n, acute or 0) for key, n, acute in repo.db.execute(
            select(Item.session_key, func.count(), func.sum(cast(Item.acute, Integer)))
            .where(Item.session_key.in_(keys), Item.status == PENDING).group_by(Item.session_key))}
        open_cases = repo.cases(open_only=True)
    stages = Counter((c.series_id, c.state.stage) for c in open_cases)
    offered = Counter(c.series_id for c in open_cases if c.state.offered_to)
    result = []
    for sid, sessions in by_series.items():
        fills = [_fill(s, counts.get(s.key, (0, 0)), now) for s in sessions]
        result.append(SeriesOverview(
            app.series[sid], fills, next((f for f in fills if not f.closed and not f.cancelled), None),
            backlog.queue_depth(app, sid, now), {stage: stages[(sid, stage)] for stage in WAITING},
            offered[sid]))
    return Overview(now, result, service_facts(app))


def _fill(session, counted: tuple[int, int], now: datetime) -> SessionFill:
    return SessionFill(session.key, session.start, session.deadline, session.capacity, counted[0],
                       int(counted[1]), not session.planned, session.deadline <= now, session.note)

