"""One active instance per database: a lease row, renewed while alive.

Works on SQLite and PostgreSQL alike. The holder renews every
``RENEW_EVERY``; a standby takes over once the lease has expired, so within
``TTL`` (well under a minute) of the holder's death. Real time, never the
simulated clock: two processes must agree on it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy.exc import IntegrityError, OperationalError

from scheduler.store.tables import Lease

TTL = timedelta(seconds=40)
RENEW_EVERY = timedelta(seconds=10)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def acquire(app, holder: str, name: str = "daemon") -> bool:
    """Take or renew the lease; False while another live holder has it."""
    now = _now()
    try:
        with app.transaction() as repo:
            row = repo.db.get(Lease, name, with_for_update=True)
            if row is None:
                repo.db.add(Lease(name=name, holder=holder, expires_at=now + TTL))
                return True
            if row.holder != holder and row.expires_at > now:
                return False
            row.holder, row.expires_at = holder, now + TTL
            return True
    except (IntegrityError, OperationalError):
        return False  # another instance won the race; try again later


def release(app, holder: str, name: str = "daemon") -> None:
    with app.transaction() as repo:
        row = repo.db.get(Lease, name)
        if row is not None and row.holder == holder:
            row.expires_at = _now()


def holder_of(app, name: str = "daemon") -> tuple[str, datetime] | None:
    with app.transaction() as repo:
        row = repo.db.get(Lease, name)
        return (row.holder, row.expires_at) if row else None
