"""Deleting what has served its purpose (GDPR storage limitation).

Items, mail records and finished outbox entries carry a ``purge_after``
time (their session plus ``storage.retention_days``); the purge deletes
them, and the files the embedded default keeps: processed mails and sent
messages older than the retention. Nothing personal outlives it; the
statistics do, as anonymous counts folded in first (``services/statistics``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import DBAPIError

from scheduler.services import casework, metrics, statistics
from scheduler.store import audit
from scheduler.store.tables import Case, Item, Mail, OutboxEntry

log = logging.getLogger("sparring.retention")

FOLDERS = ("processed", "rejected", "quarantine", "ignored", "outbox")


@dataclass
class PurgeReport:
    items: int = 0
    mails: int = 0
    outbox: int = 0
    files: int = 0
    cases: int = 0


def purge(app, source=None) -> PurgeReport:
    """Delete what is past its retention; ``source`` (IMAP, Exchange, Graph)
    also drops its settled mails (Exchange, Graph: and the copies in Sent
    Items) that arrived before the retention cut-off."""
    now = app.now()
    report = PurgeReport()
    with app.transaction() as repo:
        statistics.fold(repo, app.tz, now=now)  # the counts outlive what goes below
        _audit_purged(repo, now)
        report.cases = _purge_cases(repo, now)
        report.items = repo.db.execute(delete(Item).where(Item.purge_after < now)).rowcount
        repo.purge_decisions(now)
        report.outbox = repo.db.execute(
            delete(OutboxEntry).where(OutboxEntry.purge_after < now, OutboxEntry.status != "pending")
        ).rowcount
        expired = (Mail.purge_after < now) & ~exists(select(Item.id).where(Item.mail_id == Mail.id))
        metrics.fold_mails(repo.db, expired)  # sparring_mails_total never falls back
        report.mails = repo.db.execute(delete(Mail).where(expired)).rowcount
    cutoff = now - timedelta(days=app.config.storage.retention_days)
    for name in FOLDERS:
        report.files += _purge_files(app.data_dir / name, cutoff, app.clock)
    if source is not None and hasattr(source, "purge_settled"):
        report.files += source.purge_settled(now - timedelta(days=app.config.storage.retention_days))
    log.info("retention purge items=%d mails=%d outbox=%d files=%d cases=%d",
             report.items, report.mails, report.outbox, report.files, report.cases)
    cut_trail(app)
    return report


def _audit_purged(repo, now) -> None:
    """A trail row per item about to be purged (no data: its hash and session)."""
    rows = repo.db.execute(select(Item.cpr_hash, Item.series_id, Item.session_start).where(Item.purge_after < now))
    for row in rows:
        repo.audit("item-purged", subject=row.cpr_hash, series=row.series_id, session_start=row.session_start)


def _purge_cases(repo, now) -> int:
    """Cases closed ``followup.retention_days`` ago: the case, its meetings,
    its decisions and bookings go; a trail row per case says what went."""
    closed = repo.db.scalars(select(Case).where(Case.purge_after < now)).all()
    for case in closed:
        counts = casework.forget(repo, case)
        repo.audit("case-purged", subject=case.cpr_hash, series=case.series_id, session_start=case.session_start,
                   detail={"case": case.id, **counts})
    return len(closed)


def cut_trail(app) -> int:
    """The audit trail's own retention, in a transaction of its own: where
    the database role may only INSERT and SELECT there (see the README), the
    cut is refused and left to the owner, and the data purge stands."""
    now = app.now()
    before = now - timedelta(days=app.config.audit.retention_days)
    try:
        with app.connection() as connection:
            removed = audit.cut(connection, app.cipher, before, now)
            verdict = audit.verify(connection, app.cipher)
    except DBAPIError as exc:
        log.warning("audit trail not cut: the database refused (%s); run `sparring purge` as the "
                    "owner of the audit table", type(exc.orig).__name__)
        return 0
    # The head logged daily: a copy outside the database that shows a truncated end.
    log.info("audit trail removed=%d rows=%d head=%d:%s ok=%s", removed, verdict.rows, *verdict.head, verdict.ok)
    return removed


def _purge_files(folder: Path, cutoff: datetime, clock) -> int:
    """Files written before ``cutoff``; their mtimes are wall-clock times,
    put on the clock's timeline (``--now``) before they are compared."""
    if not folder.is_dir():
        return 0
    count = 0
    for path in folder.iterdir():
        if path.is_file() and clock.from_wall(_mtime(path)) < cutoff:
            path.unlink()
            count += 1
    return count


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
