"""One active instance per database: a lease row, renewed while alive.

Works on SQLite and PostgreSQL alike. The holder renews every
``RENEW_EVERY``; a standby takes over once the lease has expired, so within
``TTL`` (well under a minute) of the holder's death. Real time, never the
simulated clock: two processes must agree on it.

For tests, the environment may shorten both: ``SPARRING_LEASE_TTL`` and
``SPARRING_LEASE_RENEW`` (seconds, decimals allowed; the renewal interval
must be shorter than the TTL). They are read once, when this module is
imported.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from sqlalchemy.exc import IntegrityError, OperationalError

from scheduler.errors import BackendUnavailable, ConfigError
from scheduler.store.tables import Lease


def _seconds(variable: str, default: float) -> timedelta:
    text = os.environ.get(variable, "").strip()
    if not text:
        return timedelta(seconds=default)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 86400:
        raise ConfigError(f"{variable}={text!r} is not a number of seconds between 0 and 86400.")
    return timedelta(seconds=value)


TTL = _seconds("SPARRING_LEASE_TTL", 40)
RENEW_EVERY = _seconds("SPARRING_LEASE_RENEW", 10)
if RENEW_EVERY >= TTL:
    raise ConfigError("SPARRING_LEASE_RENEW must be shorter than SPARRING_LEASE_TTL, "
                      "or the lease lapses between renewals.")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def acquire(app, holder: str, name: str = "daemon") -> bool | None:
    """Take or renew the lease; False while another live holder has it,
    None when the database could not be asked (down, failing over, locked):
    the caller still holds it until its last renewal's TTL has run out."""
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
    except IntegrityError:
        return False  # another instance won the race; try again later
    except (OperationalError, BackendUnavailable):
        return None


def release(app, holder: str, name: str = "daemon") -> None:
    with app.transaction() as repo:
        row = repo.db.get(Lease, name)
        if row is not None and row.holder == holder:
            row.expires_at = _now()


def holder_of(app, name: str = "daemon") -> tuple[str, datetime] | None:
    with app.transaction() as repo:
        row = repo.db.get(Lease, name)
        return (row.holder, row.expires_at) if row else None
