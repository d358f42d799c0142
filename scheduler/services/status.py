"""What ``sparring status`` and ``sparring outbox`` show: no personal data."""

from __future__ import annotations

import json

from sqlalchemy import select

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
            f"next={e.next_attempt_at:%Y-%m-%d %H:%M} to={len(json.loads(e.recipients))} "
            f"{e.last_error or ''}".rstrip()
            for e in repo.db.scalars(query)
        ]
