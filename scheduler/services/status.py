"""What ``sparring status`` and ``sparring outbox`` show: no personal data.

Every time is local time in the service's zone (``people_time``), named
once in the first line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from scheduler.localtime import people_time
from scheduler.services.episodes import TARGETS
from scheduler.store.tables import OutboxEntry


def outbox_rows(app, failed_only: bool = False, limit: int = 50) -> list[str]:
    with app.transaction() as repo:
        query = select(OutboxEntry).order_by(OutboxEntry.id.desc()).limit(limit)
        if failed_only:
            query = query.where(OutboxEntry.status == "failed")
        else:
            query = query.where(OutboxEntry.status != "done")
        return [
            f"{e.id:>6} {e.status:<8} {e.kind:<10} attempts={e.attempts} "
            f"next={people_time(e.next_attempt_at, app.tz)} to={len(json.loads(e.recipients))} "
            f"{e.last_error or ''}".rstrip()
            for e in repo.db.scalars(query)
        ]


@dataclass(frozen=True)
class ServiceFacts:
    """The service's health as ``status`` and the overview page show it."""

    now: datetime
    holder: str | None  # the last lease holder, running or not
    lease_until: datetime | None
    running: bool
    last_intake: datetime | None
    outbox: dict[str, int]  # status -> count
    outages: list[tuple[str, datetime]]  # (target, since): open outage episodes


def service_facts(app) -> ServiceFacts:
    """Lease holder, last intake, outbox backlog and failures, open outages."""
    from scheduler.services import lease

    holder = lease.holder_of(app)
    # The lease runs on real time, whatever --now says; a stopped or dead holder's has lapsed.
    running = bool(holder and holder[1] > datetime.now(timezone.utc))
    with app.transaction() as repo:
        last = repo.get_meta("last_intake")
        counts = dict(repo.db.execute(
            select(OutboxEntry.status, func.count()).group_by(OutboxEntry.status)).all())
        outages = [(target, datetime.fromisoformat(since)) for target in TARGETS
                   if (since := repo.get_meta(f"outage:{target}"))]
    return ServiceFacts(app.now(), holder[0] if holder else None, holder[1] if holder else None, running,
                        datetime.fromisoformat(last) if last else None, counts, outages)


def status_lines(app) -> list[str]:
    """Next jobs, last intake, outbox backlog and failures, the lease holder."""
    from sqlalchemy import text

    from scheduler.services.deadlines import agenda_due
    from scheduler.store.tables import SessionState

    facts = service_facts(app)
    now = facts.now
    lines = [f"now: {people_time(now, app.tz)} (times in {app.config.service.timezone})"]
    if facts.running:
        lines.append(f"daemon: {facts.holder} (lease until {people_time(facts.lease_until, app.tz, seconds=True)})")
    else:
        lines.append(f"daemon: not running (last: {facts.holder})" if facts.holder else "daemon: not running")
    lines.append(f"last intake: {people_time(facts.last_intake, app.tz)}")
    counts = facts.outbox
    lines.append(f"outbox: pending {counts.get('pending', 0)}, failed {counts.get('failed', 0)}, "
                 f"done {counts.get('done', 0)}")
    for target, since in facts.outages:  # an open outage episode (services/episodes.py): reported once, still on
        lines.append(f"outage: {target} server failing since {people_time(since, app.tz)}; "
                     "sending waits and retries")
    with app.transaction() as repo:
        try:
            jobs = repo.db.execute(text(
                "SELECT id, next_run_time FROM apscheduler_jobs ORDER BY next_run_time LIMIT 5")).all()
        except Exception:  # the daemon has never run: no job table yet
            repo.db.rollback()
            jobs = []
        sent = {s.session_key for s in repo.db.scalars(select(SessionState)) if s.agenda_sent_at}
    for job_id, ts in jobs:
        when = datetime.fromtimestamp(ts, timezone.utc) if ts else None
        lines.append(f"job {job_id}: next {people_time(when, app.tz)}" if when else f"job {job_id}: paused")
    for session in list(agenda_due(app, now, now + timedelta(days=35)))[:4]:
        mark = "sent" if session.key in sent else "due"
        lines.append(f"agenda {session.key}: {mark} {people_time(session.deadline, app.tz)}")
    lines.extend(f"failed: {row}" for row in outbox_rows(app, failed_only=True, limit=10))
    return lines
