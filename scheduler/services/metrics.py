"""What IT watches: ``/metrics`` (Prometheus) and ``/healthz``, read from the database.

Everything is read at scrape time from the database, so ``sparring serve``
answers with no daemon in its process. What the tables do not keep lives in
``counters`` (``Counter`` rows), written in the same transaction as the
work they count:

- mails taken in: the live ``mails`` rows by outcome, plus ``mails:<outcome>``,
  the rows the purge or an erasure deleted, folded in by ``fold_mails`` just
  before they delete them, so the counter never falls back;
- receipt latency (arrival to sent): buckets counted when the outbox marks a
  receipt done (``sent``), in the done mark's own transaction;
- calendar writes (counted with the same done mark) and free/busy requests (``count``).

Heartbeats are meta rows ``heartbeat:<job>`` written by the daemon's intake
loop, sender and jobs, at most once a minute each. Their times and the
lease's are wall-clock times: a daemon under ``--now`` and a ``serve``
started with another ``--now`` still agree (``_wall``). No personal data
goes into a metric, a label or a health sentence.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from scheduler.clock import on_the_wall, wall_offset
from scheduler.errors import BackendUnavailable
from scheduler.store.tables import Counter, Lease, Mail, Meta, OutboxEntry, SessionState

OUTCOMES = ("accepted", "moved", "withdrawn", "rejected", "quarantined", "duplicate", "ignored")
# Receipt latency buckets, seconds: a receipt goes within seconds; an outage holds it for hours.
BUCKETS = (5, 15, 30, 60, 120, 300, 900, 1800, 3600, 14400, 86400)
BEAT_EVERY = timedelta(minutes=1)  # the most often a heartbeat is written


# -- persistent counters ------------------------------------------------------


# One statement, the same on SQLite (3.24+) and PostgreSQL: no race between processes creating a counter.
_BUMP = text("INSERT INTO counters (name, value) VALUES (:name, :n) "
             "ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value")


def bump(db, counts: dict[str, int]) -> None:
    """Add to counters inside the caller's transaction (``db``: an ORM session or a bare connection)."""
    rows = [{"name": name, "n": n} for name, n in counts.items() if n]
    if rows:
        db.execute(_BUMP, rows)


def count(app, name: str, n: int = 1) -> None:
    """Count ``n`` of something the tables do not keep (free/busy requests), in its own transaction."""
    with app.transaction() as repo:
        bump(repo.db, {name: n})


def fold_mails(db, deleting) -> None:
    """Before the purge or an erasure deletes the mail rows matching
    ``deleting`` (a WHERE clause): their count by outcome goes into the counters."""
    rows = db.execute(select(Mail.outcome, func.count()).where(deleting).group_by(Mail.outcome)).all()
    bump(db, {f"mails:{outcome}": n for outcome, n in rows})


RECEIPT = "receipt:"  # a mail's receipt in the outbox: "receipt:<its message_key>" (services/notices.py)
# Built once: the outbox's done mark runs it for every entry sent.
_SENT = (select(OutboxEntry.kind, Mail.received_at)
         .outerjoin(Mail, (OutboxEntry.kind == "receipt") & OutboxEntry.dedupe_key.startswith(RECEIPT)
                    & (Mail.message_key == func.substr(OutboxEntry.dedupe_key, len(RECEIPT) + 1)))
         .where(OutboxEntry.id.in_(bindparam("ids", expanding=True)), OutboxEntry.status == "pending"))


def sent(db, entry_ids: list[int], now: datetime) -> None:
    """The outbox marks these entries done: count calendar writes and receipt
    latency (the mail's arrival to now), in the done mark's transaction."""
    rows = db.execute(_SENT, {"ids": entry_ids}).all()
    seconds = [max(0.0, (now - arrived).total_seconds()) for _, arrived in rows if arrived is not None]
    buckets = collections.Counter(f"receipt_latency:le={next((b for b in BUCKETS if s <= b), math.inf)}"
                                  for s in seconds)
    bump(db, {"calendar_writes": sum(kind == "calendar" for kind, _ in rows), **buckets,
              "receipt_latency:sum_ms": round(sum(seconds) * 1000)})


# -- heartbeats and health ----------------------------------------------------


def _wall(app) -> datetime:
    """Now on the wall clock, as the app's clock sees it: the real time under
    ``--now`` (a RunningClock), the fixed time under a FixedClock (tests)."""
    return on_the_wall(app.now(), wall_offset(app.clock))


_written: dict[tuple[int, str], datetime] = {}  # (app, job) -> when its heartbeat was last written


def heartbeat(app, job: str, *, force: bool = False) -> None:
    """The daemon's ``job`` is alive. Written at most once a minute (the
    intake loop runs every few seconds); a database away skips it (the
    heartbeat goes stale, and ``health`` says so)."""
    moment, key = _wall(app), (id(app), job)
    last = _written.get(key)
    if not force and last is not None and timedelta(0) <= moment - last < BEAT_EVERY:
        return
    try:
        with app.transaction() as repo:
            repo.set_meta(f"heartbeat:{job}", moment.isoformat())
    except (SQLAlchemyError, BackendUnavailable):
        return
    _written[key] = moment


@dataclass(frozen=True)
class Health:
    ok: bool
    checks: list[tuple[str, bool, str]] = field(default_factory=list)  # (name, ok, one sentence)


# The longest a job may go without a heartbeat: from its cadence, with room.
HOURLY, DAILY = timedelta(hours=2), timedelta(hours=26)
ALLOWED = {
    "sender": timedelta(minutes=10),  # a round at least every 30 s, a stalled send up to ~2 SMTP timeouts
    "catch_up": timedelta(minutes=30),  # every minute, but behind a long job on the single job thread
    "cases": HOURLY,
    "coordination": HOURLY,
    "backlog": HOURLY,
    "publish": DAILY,
    "purge": DAILY,
    "cooperation": DAILY,
}


def allowed_intake(app) -> timedelta:
    """A few poll intervals, and never under five minutes (a beat a minute, a server's short back-off)."""
    return max(timedelta(minutes=5), timedelta(seconds=4 * app.config.poll_seconds))


def health(app, now: datetime | None = None) -> Health:
    """Is the daemon alive? The lease has a live holder and no job is
    overdue. ``now`` is a wall-clock instant (default: the app's clock put
    on the wall, see ``_wall``)."""
    now = now or _wall(app)
    with app.transaction() as repo:
        lease = repo.db.get(Lease, "daemon")
        beats = {row.key.removeprefix("heartbeat:"): datetime.fromisoformat(row.value)
                 for row in repo.db.scalars(select(Meta).where(Meta.key.like("heartbeat:%")))}
    if lease is None:
        return Health(False, [("daemon", False, "the daemon has never run")])
    checks = [_lease_check(lease, now)]
    started = beats.get("daemon", now)
    for job, allowed in {"intake": allowed_intake(app), **ALLOWED}.items():
        checks.append(_job_check(job, max(beats.get(job, started), started), allowed, now))
    return Health(all(ok for _, ok, _ in checks), checks)


def _lease_check(lease: Lease, now: datetime) -> tuple[str, bool, str]:
    if lease.expires_at > now:
        return "lease", True, f"the lease is held by {_host(lease.holder)}"
    return "lease", False, f"the lease has lapsed: no daemon holds it (last held by {_host(lease.holder)})"


def _job_check(job: str, last: datetime, allowed: timedelta, now: datetime) -> tuple[str, bool, str]:
    age = now - last
    if age <= allowed:
        return job, True, f"{job} ran {_minutes(age)} ago"
    return job, False, f"{job} has not run for {_minutes(age)} (allowed {_minutes(allowed)})"


def _minutes(span: timedelta) -> str:
    minutes = max(0, round(span.total_seconds() / 60))
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _host(holder: str) -> str:
    """The lease holder is ``host:pid``: the host names the instance; the pid only churns labels."""
    return holder.rpartition(":")[0] or holder


# -- the collector ------------------------------------------------------------


class DatabaseCollector:
    """Reads the database at each scrape (``prometheus_client`` custom collector)."""

    def __init__(self, app) -> None:
        self.app = app

    def collect(self):
        with self.app.transaction() as repo:
            db = repo.db
            counters = dict(db.execute(select(Counter.name, Counter.value)).all())
            live = dict(db.execute(select(Mail.outcome, func.count()).group_by(Mail.outcome)).all())
            outbox = dict(db.execute(select(OutboxEntry.status, func.count()).group_by(OutboxEntry.status)).all())
            agendas = db.scalar(select(func.count()).where(SessionState.agenda_sent_at.is_not(None)))
            late = db.scalar(select(func.count()).where(SessionState.agenda_sent_at.is_not(None),
                                                        SessionState.agenda_late.is_(True)))
            lease = db.get(Lease, "daemon")
        yield _mails(live, counters)
        yield _latency(counters)
        yield _gauge("sparring_outbox_pending", "Outbox entries waiting to be sent.", outbox.get("pending", 0))
        yield _gauge("sparring_outbox_failed", "Outbox entries that failed for good (sparring outbox --failed).",
                     outbox.get("failed", 0))
        yield _counter("sparring_agendas_sent", "Agendas sent (sessions whose agenda went out).", agendas)
        yield _counter("sparring_agendas_late", "Agendas sent after their deadline.", late)
        yield _counter("sparring_calendar_writes", "Calendar writes done (events put or cancelled).",
                       counters.get("calendar_writes", 0))
        yield _counter("sparring_freebusy_requests", "Free/busy requests made to the calendar server.",
                       counters.get("freebusy_requests", 0))
        yield self._lease(lease)

    def _lease(self, lease: Lease | None) -> GaugeMetricFamily:
        held = GaugeMetricFamily("sparring_lease_held", "1 while a daemon holds the lease, by host.",
                                 labels=["holder"])
        alive = lease is not None and lease.expires_at > _wall(self.app)
        held.add_metric([_host(lease.holder) if lease else ""], 1 if alive else 0)
        return held


def _mails(live: dict, counters: dict) -> CounterMetricFamily:
    mails = CounterMetricFamily("sparring_mails", "Mails taken in, by outcome.", labels=["outcome"])
    folded = {name.removeprefix("mails:"): n for name, n in counters.items() if name.startswith("mails:")}
    for outcome in sorted(set(OUTCOMES) | set(live) | set(folded)):
        mails.add_metric([outcome], live.get(outcome, 0) + folded.get(outcome, 0))
    return mails


def _latency(counters: dict) -> HistogramMetricFamily:
    cumulative, buckets = 0, []
    for bound in (*BUCKETS, math.inf):
        cumulative += counters.get(f"receipt_latency:le={bound}", 0)
        buckets.append(("+Inf" if bound == math.inf else str(bound), cumulative))
    return HistogramMetricFamily("sparring_receipt_latency_seconds", "From a mail's arrival to its receipt sent.",
                                 buckets=buckets, sum_value=counters.get("receipt_latency:sum_ms", 0) / 1000)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)  # exposed as <name>_total


def registry(app) -> CollectorRegistry:
    """A registry of this app's database metrics only (no process metrics:
    ``serve`` is not the daemon): ``generate_latest(registry(app))``."""
    found = CollectorRegistry(auto_describe=False)
    found.register(DatabaseCollector(app))
    return found
